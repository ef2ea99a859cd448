package reliability_test

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dlite-dev/dlite/internal/chaos"
	"github.com/dlite-dev/dlite/mockmanager"
)

// jweHeader is how every compact JWE minted from an account secret starts: the base64url of
// {"alg":"dir",...
const jweHeader = "eyJhbGciOiJkaXIi"

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// requireNoCredentials fails when out holds a secret, a minted token or an Authorization header.
func requireNoCredentials(t *testing.T, name string, out []byte, secrets []string, allowHeaderName bool) {
	t.Helper()
	text := string(out)
	for _, s := range secrets {
		require.NotEmpty(t, s)
		require.NotContains(t, strings.ToLower(text), strings.ToLower(s), "%s: a secret or token leaked", name)
	}
	require.NotContains(t, text, jweHeader, "%s: a minted token leaked", name)
	require.NotContains(t, text, "Delegate ey", "%s: a Delegate credential leaked", name)
	if !allowHeaderName {
		require.NotContains(t, text, "Authorization", "%s: an Authorization header leaked", name)
	}
}

// At debug level, through registration, heartbeats, tasks that succeed, fail, time out and call
// out, a runner's whole output (stdout and stderr) holds neither the account secret nor any token
// minted from it nor an Authorization header; neither does the output of a runner refused with 401
// for a wrong secret, nor what a task sends the manager. When a broken manager echoes the request
// headers back, the runner's error text blanks the token out.
func TestSecretsStayOutOfTheOutput(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	proxy := newProxy(t, mm.URL)
	secret := mm.AccountSecret()

	env := managerSettings(t, mm, proxy.URL())
	env["DLITE_LOG_LEVEL"] = "debug"
	env["DLITE_LOG_FORMAT"] = "text"
	runner := startRunner(t, "runner", env)

	wrong := randomSecret(t)
	wrongEnv := managerSettings(t, mm, proxy.URL())
	wrongEnv["DLITE_ACCOUNT_SECRET"] = strings.ToUpper(wrong)
	wrongEnv["DLITE_LOG_LEVEL"] = "debug"
	refused := startRunner(t, "refused", wrongEnv)

	ids := []string{
		enqueue(t, mm, "SLEEP_TASK", sleepTask(0)),
		enqueue(t, mm, "SHELL_SCRIPT_TASK", map[string]any{"script": "echo ok"}),
		enqueue(t, mm, "SHELL_SCRIPT_TASK", map[string]any{"script": "echo boom >&2; exit 3"}, runnerResponse),
		enqueue(t, mm, "SHELL_SCRIPT_TASK", map[string]any{"script": "env; echo \"[$DLITE_ACCOUNT_SECRET]\""}),
		enqueue(t, mm, "SHELL_SCRIPT_TASK", map[string]any{"script": "sleep 5"}, func(nt *mockmanager.NewTask) {
			nt.Timeout, nt.RunnerResponse = new(int64(1)), new(true) // the legacy endpoint knows no TIMEOUT
		}),
		enqueue(t, mm, "HTTP_TASK", map[string]any{"url": "http://127.0.0.1:1/"}),
	}
	codes := map[string]int{}
	for _, id := range ids {
		st := waitDone(t, mm, id)
		require.Len(t, st.Responses, 1)
		codes[st.Responses[0].Code]++
		if st.Responses[0].Data != nil {
			require.NotContains(t, strings.ToLower(string(*st.Responses[0].Data)), secret, "a task's output holds the secret")
		}
	}
	require.Equal(t, map[string]int{"OK": 3, "FAILED": 2, "TIMEOUT": 1}, codes)
	// A few heartbeats, and the refused runner trying again.
	eventually(t, "heartbeats", func() bool { return proxy.Seen(chaos.OpHeartbeat) >= 3 })
	eventually(t, "the wrong secret to be refused a few times", func() bool {
		return strings.Count(string(refused.Output()), "401") >= 2
	})
	require.NoError(t, runner.Stop(waitFor))
	require.NoError(t, refused.Stop(waitFor))

	credentials := proxy.Credentials()
	require.NotEmpty(t, credentials)
	for _, c := range credentials {
		require.True(t, strings.HasPrefix(c, jweHeader), "every credential sent is a minted token")
	}
	all := append([]string{secret, wrong}, credentials...)
	requireNoCredentials(t, "runner", runner.Output(), all, false)
	requireNoCredentials(t, "refused runner", refused.Output(), all, false)
	require.Contains(t, string(refused.Output()), "401", "the refusal itself is reported")

	t.Run("echoed headers", func(t *testing.T) {
		t.Parallel()
		echoEnv := managerSettings(t, mm, proxy.URL())
		echoEnv["DLITE_LOG_LEVEL"] = "debug"
		echoed := startRunner(t, "echoed", echoEnv)
		logged(t, echoed, "registered with the manager")
		before := proxy.Seen(chaos.OpPoll)
		proxy.SetMode(chaos.Echo, chaos.OpPoll)
		eventually(t, "polls answered with the echoed headers", func() bool { return proxy.Seen(chaos.OpPoll) >= before+3 })
		proxy.SetMode(chaos.Pass)
		require.NoError(t, echoed.Stop(waitFor))
		out := echoed.Output()
		require.Contains(t, string(out), "[redacted]", "the echoed token is blanked out")
		// The echo names the header; its value must not follow.
		requireNoCredentials(t, "echoed runner", out, append([]string{secret}, proxy.Credentials()...), true)
	})
}

// The account secret read from DLITE_ACCOUNT_SECRET_FILE works end to end and stays out of the
// output.
func TestAccountSecretFile(t *testing.T) {
	t.Parallel()
	mm := newManager(t, mockmanager.Options{})
	env := managerSettings(t, mm, mm.URL)
	file := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(file, []byte(mm.AccountSecret()+"\n"), 0o600))
	delete(env, "DLITE_ACCOUNT_SECRET")
	env["DLITE_ACCOUNT_SECRET_FILE"] = file
	env["DLITE_LOG_LEVEL"] = "debug"
	runner := startRunner(t, "runner", env)
	st := waitDone(t, mm, enqueue(t, mm, "SLEEP_TASK", sleepTask(0)))
	require.Equal(t, "OK", st.Responses[0].Code)
	require.NoError(t, runner.Stop(waitFor))
	requireNoCredentials(t, "runner", runner.Output(), []string{mm.AccountSecret()}, false)
}

// A fixed DLITE_TOKEN works end to end: it is sent as it is, and never shows in the output.
func TestFixedToken(t *testing.T) {
	t.Parallel()
	token := "fixed-" + randomSecret(t)
	mm := newManager(t, mockmanager.Options{Tokens: []string{token}})
	proxy := newProxy(t, mm.URL)
	env := settings(proxy.URL(), mm.AccountID(), "", filepath.Join(t.TempDir(), "spool"))
	delete(env, "DLITE_ACCOUNT_SECRET")
	env["DLITE_TOKEN"] = token
	env["DLITE_LOG_LEVEL"] = "debug"
	runner := startRunner(t, "runner", env)
	st := waitDone(t, mm, enqueue(t, mm, "SLEEP_TASK", sleepTask(0)))
	require.Equal(t, "OK", st.Responses[0].Code)
	require.NoError(t, runner.Stop(waitFor))
	require.Equal(t, []string{token}, proxy.Credentials())
	requireNoCredentials(t, "runner", runner.Output(), []string{token}, false)
}

// Turning TLS verification off is never silent: the runner says so, and then works against a
// manager whose certificate it could not verify. Without the setting it refuses that manager.
func TestInsecureTLSIsNotSilent(t *testing.T) {
	t.Parallel()
	mm, err := mockmanager.New(mockmanager.Options{
		AccountID:     "tls-account",
		AccountSecret: randomSecret(t),
		Logger:        slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(mm.Handler())
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)

	verifying := startRunner(t, "verifying", settings(srv.URL, mm.AccountID(), mm.AccountSecret(), filepath.Join(t.TempDir(), "spool")))
	eventually(t, "an unverifiable manager to be refused", func() bool {
		for _, r := range chaos.Find(chaos.Records(verifying.Output()), "registration failed; retrying") {
			if strings.Contains(r.Line, "certificate") {
				return true
			}
		}
		return false
	})
	require.Empty(t, mm.Delegates())
	require.NoError(t, verifying.Stop(waitFor))

	env := settings(srv.URL, mm.AccountID(), mm.AccountSecret(), filepath.Join(t.TempDir(), "spool"))
	env["DLITE_TLS_INSECURE_SKIP_VERIFY"] = "true"
	insecure := startRunner(t, "insecure", env)
	warning := logged(t, insecure, "TLS certificate verification of the manager is turned off; anyone on the network path can read and change the runner's traffic")
	require.Equal(t, "WARN", warning.Level)
	id, err := mm.Enqueue(mockmanager.NewTask{Type: "SLEEP_TASK", Data: rawJSON(`{"milliseconds":0}`), Timeout: new(int64(30))})
	require.NoError(t, err)
	ctx, cancel := contextWithTimeout(waitFor)
	defer cancel()
	st, err := mm.WaitDone(ctx, id)
	require.NoError(t, err)
	require.Equal(t, "OK", st.Responses[0].Code)
}
