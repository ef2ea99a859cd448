package mockmanager

import (
	"context"
	"errors"

	adminapi "github.com/dlite-dev/dlite/gen/admin"
)

// The admin calls that read what runners sent to the mock log service.

func (a adminAPI) ListLogKeys(_ context.Context, req adminapi.ListLogKeysRequestObject) (adminapi.ListLogKeysResponseObject, error) {
	keys := a.s.LogKeys(deref(req.Params.Prefix))
	if acct := deref(req.Params.AccountId); acct != "" {
		kept := keys[:0]
		for _, k := range keys {
			if k.AccountId == acct {
				kept = append(kept, k)
			}
		}
		keys = kept
	}
	return adminapi.ListLogKeys200JSONResponse(keys), nil
}

func (a adminAPI) GetLogStream(_ context.Context, req adminapi.GetLogStreamRequestObject) (adminapi.GetLogStreamResponseObject, error) {
	st, err := a.s.Stream(deref(req.Params.AccountId), req.Params.Key)
	if err != nil {
		return adminapi.GetLogStream404JSONResponse{NotFoundJSONResponse: adminapi.NotFoundJSONResponse(adminError(err))}, nil
	}
	st.Lines = nonNil(st.Lines)
	return adminapi.GetLogStream200JSONResponse(st), nil
}

func (a adminAPI) GetLogBlob(_ context.Context, req adminapi.GetLogBlobRequestObject) (adminapi.GetLogBlobResponseObject, error) {
	b, err := a.s.Blob(deref(req.Params.AccountId), req.Params.Key)
	if err != nil {
		return adminapi.GetLogBlob404JSONResponse{NotFoundJSONResponse: adminapi.NotFoundJSONResponse(adminError(err))}, nil
	}
	b.Lines = nonNil(b.Lines)
	return adminapi.GetLogBlob200JSONResponse(b), nil
}

func (a adminAPI) GetLogConfig(ctx context.Context, _ adminapi.GetLogConfigRequestObject) (adminapi.GetLogConfigResponseObject, error) {
	base, ok := ctx.Value(baseURLKey{}).(string)
	if !ok {
		return nil, errors.New("log config: the request carries no base URL")
	}
	return adminapi.GetLogConfig200JSONResponse(a.s.LogConfig(base)), nil
}

// nonNil turns an absent list into an empty one: the admin contract does not let lists be null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
