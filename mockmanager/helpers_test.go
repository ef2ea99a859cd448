package mockmanager_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"

	adminapi "github.com/dlite-dev/dlite/gen/admin"
	managerapi "github.com/dlite-dev/dlite/gen/manager"
	"github.com/dlite-dev/dlite/mockmanager"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// mintToken mints a Delegate token the way a runner does: a compact JWE, alg dir, enc A128GCM,
// encrypted with the hex-decoded account secret.
func mintToken(t testing.TB, secret, accountID string, issuedAt time.Time) string {
	t.Helper()
	key, err := hex.DecodeString(secret)
	require.NoError(t, err)
	enc, err := jose.NewEncrypter(jose.A128GCM,
		jose.Recipient{Algorithm: jose.DIRECT, Key: key},
		(&jose.EncrypterOptions{}).WithType("JWT"))
	require.NoError(t, err)
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	token, err := jwt.Encrypted(enc).Claims(jwt.Claims{
		Subject:  accountID,
		Issuer:   "issuer",
		Audience: jwt.Audience{"audience"},
		IssuedAt: jwt.NewNumericDate(issuedAt),
		Expiry:   jwt.NewNumericDate(issuedAt.Add(20 * time.Minute)),
		ID:       hex.EncodeToString(jti),
	}).Serialize()
	require.NoError(t, err)
	return token
}

// runner is one delegate's view of the mock manager: a generated manager client carrying a token.
type runner struct {
	t       testing.TB
	c       *managerapi.ClientWithResponses
	account string
	id      string
}

func newRunner(t testing.TB, mm *mockmanager.TestServer, authorization string) *runner {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	c, err := managerapi.NewClientWithResponses(mm.URL,
		managerapi.WithHTTPClient(hc),
		managerapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			if authorization != "" {
				req.Header.Set("Authorization", authorization)
			}
			return nil
		}))
	require.NoError(t, err)
	return &runner{t: t, c: c, account: mm.AccountID()}
}

// newAuthedRunner returns a runner with a valid JWE for mm.
func newAuthedRunner(t testing.TB, mm *mockmanager.TestServer) *runner {
	return newRunner(t, mm, "Delegate "+mintToken(t, mm.AccountSecret(), mm.AccountID(), time.Now()))
}

func (r *runner) register(name string, types, tags []string) string {
	r.t.Helper()
	// The contract does not let lists be null.
	types, tags = append([]string{}, types...), append([]string{}, tags...)
	res, err := r.c.RegisterDelegateWithResponse(context.Background(),
		&managerapi.RegisterDelegateParams{AccountId: r.account},
		managerapi.DelegateParams{DelegateName: &name, HostName: new("host-" + name), SupportedTaskTypes: &types, Tags: &tags})
	require.NoError(r.t, err)
	require.Equal(r.t, http.StatusOK, res.StatusCode(), string(res.Body))
	require.NotNil(r.t, res.JSON200.Resource)
	r.id = *res.JSON200.Resource.DelegateId
	require.NotEmpty(r.t, r.id)
	return r.id
}

func (r *runner) poll() []managerapi.TaskEventFields {
	r.t.Helper()
	res, err := r.c.GetTaskEventsWithResponse(context.Background(), r.id, &managerapi.GetTaskEventsParams{AccountId: r.account})
	require.NoError(r.t, err)
	require.Equal(r.t, http.StatusOK, res.StatusCode(), string(res.Body))
	var out []managerapi.TaskEventFields
	for _, ev := range *res.JSON200.DelegateTaskEvents {
		v, err := ev.AsDelegateTaskEvent()
		require.NoError(r.t, err)
		out = append(out, v)
	}
	return out
}

func (r *runner) acquire(taskID string) *managerapi.AcquireTaskResponse {
	r.t.Helper()
	res, err := r.c.AcquireTaskWithResponse(context.Background(), r.id, taskID,
		&managerapi.AcquireTaskParams{AccountId: r.account, DelegateInstanceId: r.id})
	require.NoError(r.t, err)
	return res
}

func (r *runner) heartbeat(delegateID string) *managerapi.HeartbeatResponse {
	r.t.Helper()
	res, err := r.c.HeartbeatWithResponse(context.Background(), &managerapi.HeartbeatParams{AccountId: r.account},
		managerapi.DelegateParams{DelegateId: &delegateID})
	require.NoError(r.t, err)
	return res
}

// eventIDs returns the task ids of the events, by kind.
func eventIDs(events []managerapi.TaskEventFields) (tasks, aborts []string) {
	for _, ev := range events {
		if ev.EventType != nil && *ev.EventType == "DelegateTaskAbortEvent" {
			aborts = append(aborts, ev.DelegateTaskId)
		} else {
			tasks = append(tasks, ev.DelegateTaskId)
		}
	}
	return tasks, aborts
}

func enqueue(t testing.TB, mm *mockmanager.TestServer, nt mockmanager.NewTask) string {
	t.Helper()
	id, err := mm.Enqueue(nt)
	require.NoError(t, err)
	return id
}

func newAdminClient(t testing.TB, mm *mockmanager.TestServer) *adminapi.ClientWithResponses {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	c, err := adminapi.NewClientWithResponses(mm.URL, adminapi.WithHTTPClient(hc))
	require.NoError(t, err)
	return c
}

// clock is a time source tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
