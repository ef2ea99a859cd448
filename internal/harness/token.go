package harness

import (
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// tokenLifetime is how long a minted token is valid (its exp minus its iat).
	tokenLifetime = 20 * time.Minute
	// tokenReuse is how long a minted token is sent before a new one is minted, so a token in
	// use is always at least tokenLifetime-tokenReuse away from expiry, whatever the clock skew.
	tokenReuse = 10 * time.Minute
	// The fixed issuer and audience the manager expects.
	tokenIssuer   = "issuer"
	tokenAudience = "audience"
)

// tokenSource hands out the Delegate token: a fixed one, or a JWE minted from the account secret
// and cached. It is safe for concurrent use; concurrent callers that find the cache stale wait
// for a single mint.
type tokenSource struct {
	fixed   string
	account string
	enc     jose.Encrypter
	now     func() time.Time
	newID   func() string

	mu     sync.Mutex
	cached string
	issued time.Time
}

func newTokenSource(fixed, account string, key []byte, now func() time.Time, newID func() string) (*tokenSource, error) {
	s := &tokenSource{fixed: fixed, account: account, now: now, newID: newID}
	if fixed != "" {
		return s, nil
	}
	enc, err := jose.NewEncrypter(jose.A128GCM,
		jose.Recipient{Algorithm: jose.DIRECT, Key: key},
		(&jose.EncrypterOptions{}).WithType("JWT"))
	if err != nil {
		return nil, invalidConfig("DLITE_ACCOUNT_SECRET cannot encrypt tokens: %v", err)
	}
	s.enc = enc
	return s, nil
}

// token returns the token to send now.
func (s *tokenSource) token() (string, error) {
	if s.fixed != "" {
		return s.fixed, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	// A clock that went backwards also gets a fresh token, so iat is never in the future.
	if age := now.Sub(s.issued); s.cached != "" && age >= 0 && age < tokenReuse {
		return s.cached, nil
	}
	tok, err := s.mint(now)
	if err != nil {
		return "", err
	}
	s.cached, s.issued = tok, now
	return tok, nil
}

// current returns the token last handed out, or "" before the first call.
func (s *tokenSource) current() string {
	if s.fixed != "" {
		return s.fixed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cached
}

func (s *tokenSource) mint(now time.Time) (string, error) {
	claims := jwt.Claims{
		Subject: s.account,
		Issuer:  tokenIssuer,
		// A one-element Audience is serialized as a plain JSON string, as the manager expects.
		Audience: jwt.Audience{tokenAudience},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(tokenLifetime)),
		ID:       s.newID(),
	}
	tok, err := jwt.Encrypted(s.enc).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("mint the Delegate token: %w", err)
	}
	return tok, nil
}
