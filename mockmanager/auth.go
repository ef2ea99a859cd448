package mockmanager

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// tokenLeeway is the clock skew tolerated on a JWE's exp and nbf.
const tokenLeeway = 30 * time.Second

// authError is why a request was refused with 401. Its reason never quotes the token.
type authError struct{ reason string }

func (e *authError) Error() string { return e.reason }

func unauthorized(format string, args ...any) error {
	return &authError{reason: fmt.Sprintf(format, args...)}
}

// authenticate checks the Delegate security scheme of the manager contract: the token must be a
// configured fixed token, or a JWE encrypted with the account secret whose subject is the account
// and which has not expired. A request naming another account in accountId is refused with 401
// too, since no token of this manager is valid for it; a missing accountId is left to parameter
// validation (400).
func (s *Server) authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	req := in.RequestValidationInput.Request
	if err := s.checkToken(req.Header.Get("Authorization")); err != nil {
		return err
	}
	if acct := req.URL.Query().Get("accountId"); acct != "" && acct != s.accountID {
		return unauthorized("accountId %q is not this manager's account", acct)
	}
	return nil
}

func (s *Server) checkToken(header string) error {
	if header == "" {
		return unauthorized("missing Authorization header")
	}
	scheme, token, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Delegate") || token == "" {
		return unauthorized(`Authorization must be "Delegate <token>"`)
	}
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare([]byte(token), t) == 1 {
			return nil
		}
	}
	if s.key == nil {
		return unauthorized("token is not one of the configured tokens")
	}
	jwe, err := jwt.ParseEncrypted(token, []jose.KeyAlgorithm{jose.DIRECT}, []jose.ContentEncryption{jose.A128GCM})
	if err != nil {
		return unauthorized("token is neither a configured token nor a compact JWE with alg dir and enc A128GCM")
	}
	var claims jwt.Claims
	if err := jwe.Claims(s.key, &claims); err != nil {
		return unauthorized("token does not decrypt with the account secret")
	}
	if claims.Expiry == nil {
		return unauthorized("token has no exp claim")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Subject: s.accountID, Time: s.now()}, tokenLeeway)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrExpired):
		return unauthorized("token expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrInvalidSubject):
		return unauthorized("token subject %q is not this manager's account", claims.Subject)
	default:
		return unauthorized("token claims refused: %v", err)
	}
}
