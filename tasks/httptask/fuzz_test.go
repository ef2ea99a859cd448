package httptask

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http/httpguts"

	"github.com/dlite-dev/dlite/errs"
	gentasks "github.com/dlite-dev/dlite/gen/tasks"
)

// FuzzHTTPData feeds arbitrary JSON through the decoding of the generated request type and the
// handler's own checks, and builds (never sends) the request of every call they accept: whatever
// the checks let through must make a well-formed request.
func FuzzHTTPData(f *testing.F) {
	f.Add([]byte(`{"url":"http://example.com"}`))
	f.Add([]byte(`{"url":"https://u:p@h:8443/p?q=1#f","method":"POST","headers":{"Host":"v","X-A":"b"},"body":"x","timeoutSeconds":5,"expectedStatus":[200,201]}`))
	f.Add([]byte(`{"url":"ftp://x","method":"TRACE","headers":{"a b":"\r\n"},"timeoutSeconds":0,"expectedStatus":[99]}`))
	f.Add([]byte(`{"url":"http://[::1]:80/%zz"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var data gentasks.HttpTaskData
		if json.Unmarshal(raw, &data) != nil {
			return
		}
		c, err := newCall(&data)
		if err != nil {
			require.True(t, errors.Is(err, errs.ErrInvalidTaskData), "%v", err)
			return
		}
		req, err := c.request(context.Background())
		require.NoError(t, err)
		require.Contains(t, []string{"http", "https"}, req.URL.Scheme)
		require.NotEmpty(t, req.URL.Hostname())
		for name, values := range req.Header {
			require.True(t, httpguts.ValidHeaderFieldName(name), name)
			for _, v := range values {
				require.True(t, httpguts.ValidHeaderFieldValue(v))
			}
		}
		require.NotEmpty(t, c.expectation())
		require.NotEmpty(t, c.target())
		_ = c.accepts(200)
		logged, err := url.Parse(logURL(c.url))
		require.NoError(t, err)
		require.Nil(t, logged.User, "credentials in a logged URL")
		require.Empty(t, logged.RawQuery, "query in a logged URL")
		require.Empty(t, logged.Path, "path in a logged URL")
	})
}

func TestTrimCutRune(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":              "",
		"abc":           "abc",
		"aé":            "aé",
		"a\xc3":         "a",
		"a\xe2\x82":     "a",
		"a€":            "a€",
		"a\xf0\x9f\x98": "a",
		"\x80\x80\x80":  "\x80\x80\x80",
	}
	for in, want := range cases {
		got := string(trimCutRune([]byte(in)))
		require.Equal(t, want, got, "%q", in)
		if utf8.ValidString(want) {
			require.True(t, utf8.ValidString(got))
		}
	}
}
