package harness_test

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/harness"
)

// tokensSent returns the Delegate tokens of the requests rec received, in order.
func tokensSent(t *testing.T, rec *recorder) []string {
	t.Helper()
	var toks []string
	for _, r := range rec.all() {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Delegate ")
		require.True(t, ok, "Authorization %q is not a Delegate token", r.Header.Get("Authorization"))
		toks = append(toks, tok)
	}
	return toks
}

func TestMintedTokenDecryptsToTheExpectedClaims(t *testing.T) {
	t.Parallel()
	endpoint, rec := newServer(t, reply(http.StatusOK, `{"delegateTaskEvents":[]}`))
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newClient(t, endpoint, func(o *harness.Options) { o.Now = newClock(now).Now })

	_, err := c.Poll(t.Context(), "del-123")
	require.NoError(t, err)
	toks := tokensSent(t, rec)
	require.Len(t, toks, 1)

	header, err := base64.RawURLEncoding.DecodeString(strings.Split(toks[0], ".")[0])
	require.NoError(t, err)
	require.JSONEq(t, `{"alg":"dir","enc":"A128GCM","typ":"JWT"}`, string(header))

	parsed, err := jwt.ParseEncrypted(toks[0], []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A128GCM})
	require.NoError(t, err)
	key, err := hex.DecodeString(testSecret)
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, parsed.Claims(key, &claims))

	require.Equal(t, "acct-1", claims["sub"])
	require.Equal(t, "issuer", claims["iss"])
	require.Equal(t, "audience", claims["aud"], "aud must be a JSON string, not an array")
	require.InDelta(t, float64(now.Unix()), claims["iat"], 0)
	require.InDelta(t, float64(now.Add(20*time.Minute).Unix()), claims["exp"], 0)
	jti, ok := claims["jti"].(string)
	require.True(t, ok)
	_, err = uuid.Parse(jti)
	require.NoError(t, err)

	otherKey, err := hex.DecodeString("ffffffffffffffffffffffffffffffff")
	require.NoError(t, err)
	require.Error(t, parsed.Claims(otherKey, &claims), "the token must only open with the account secret")
}

func TestTokenIsReusedForTenMinutes(t *testing.T) {
	t.Parallel()
	endpoint, rec := newServer(t, reply(http.StatusOK, `{}`))
	clock := newClock(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	var minted atomic.Int32
	c := newClient(t, endpoint, func(o *harness.Options) {
		o.Now = clock.Now
		o.NewID = func() string { minted.Add(1); return uuid.NewString() }
	})
	poll := func() {
		_, err := c.Poll(t.Context(), "del-123")
		require.NoError(t, err)
	}

	poll()
	clock.Advance(10*time.Minute - time.Second)
	poll()
	clock.Advance(time.Second)
	poll()
	clock.Advance(time.Minute)
	poll()

	toks := tokensSent(t, rec)
	require.Len(t, toks, 4)
	require.Equal(t, toks[0], toks[1], "a token younger than 10 minutes is reused")
	require.NotEqual(t, toks[1], toks[2], "a token 10 minutes old is replaced")
	require.Equal(t, toks[2], toks[3])
	require.Equal(t, int32(2), minted.Load())
}

func TestTokenIsMintedOnceUnderConcurrency(t *testing.T) {
	t.Parallel()
	endpoint, rec := newServer(t, reply(http.StatusOK, `{}`))
	var minted atomic.Int32
	c := newClient(t, endpoint, func(o *harness.Options) {
		o.NewID = func() string { minted.Add(1); return uuid.NewString() }
	})

	const callers = 32
	start := make(chan struct{})
	failures := make(chan error, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			<-start
			if _, err := c.Poll(t.Context(), "del-123"); err != nil {
				failures <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(failures)
	for err := range failures {
		require.NoError(t, err)
	}

	toks := tokensSent(t, rec)
	require.Len(t, toks, callers)
	for _, tok := range toks {
		require.Equal(t, toks[0], tok)
	}
	require.Equal(t, int32(1), minted.Load())
}

func TestFixedTokenIsSentAsIs(t *testing.T) {
	t.Parallel()
	endpoint, rec := newServer(t, reply(http.StatusOK, `{}`))
	c := newClient(t, endpoint, func(o *harness.Options) {
		o.AccountSecret = ""
		o.Token = "fixed-operator-token"
	})
	_, err := c.Poll(t.Context(), "del-123")
	require.NoError(t, err)
	require.Equal(t, "Delegate fixed-operator-token", rec.only(t).Header.Get("Authorization"))
}
