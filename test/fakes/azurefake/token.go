package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// claims are what an access token says. Real Entra tokens are RS256 JWTs
// with many more claims; the SDK treats tokens as opaque, so the fake's are
// its own: HS256 JWTs that only the two fake processes read.
type claims struct {
	Audience string `json:"aud"`
	AppID    string `json:"appid"`
	Tenant   string `json:"tid"`
	Expires  int64  `json:"exp"`
}

type tokenSigner struct{ key []byte }

var b64 = base64.RawURLEncoding

func (s tokenSigner) sign(c claims) string {
	head := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body, _ := json.Marshal(c)
	unsigned := head + "." + b64.EncodeToString(body)
	return unsigned + "." + b64.EncodeToString(s.mac(unsigned))
}

func (s tokenSigner) mac(msg string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// verify checks a token's signature and expiry and returns its claims.
func (s tokenSigner) verify(tok string) (claims, error) {
	var c claims
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return c, errors.New("malformed token")
	}
	sig, err := b64.DecodeString(tok[i+1:])
	if err != nil || !hmac.Equal(sig, s.mac(tok[:i])) {
		return c, errors.New("bad signature")
	}
	parts := strings.Split(tok[:i], ".")
	if len(parts) != 2 {
		return c, errors.New("malformed token")
	}
	body, err := b64.DecodeString(parts[1])
	if err != nil || json.Unmarshal(body, &c) != nil {
		return c, errors.New("malformed claims")
	}
	if time.Now().Unix() >= c.Expires {
		return c, errors.New("token expired")
	}
	return c, nil
}
