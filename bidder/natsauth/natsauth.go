// Package natsauth turns a NATS client's security settings (credentials
// and TLS) into nats.go options. It is shared by everything in bidpulse that
// connects to a NATS server: the service (to an external server), publish
// and bench. It reads the files it is given but never flags or the
// environment: cmd/bidpulse fills a Config from those.
package natsauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/bidpulse/bidpulse/internal/secretfile"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Config is how a client authenticates to a NATS server and verifies it.
// At most one authentication method may be set: a creds file, an nkey seed
// file, a user and password, or a token. A secret may be given as a value
// or as a file holding it (not both), so that it never has to be on a
// command line. The zero Config connects without credentials, and with TLS
// only when the server URL asks for it (tls://).
//
// The field names in errors are those of bidpulse's flags (nats-creds, ...).
type Config struct {
	// CredsFile is a .creds file: a user JWT and its nkey seed, as the nsc
	// tool writes them (decentralised JWT authentication).
	CredsFile string
	// NkeyFile is a file holding a user nkey seed (SU...), as written by
	// `nk -gen user` or by bidpulse serve for its embedded server's users.
	NkeyFile string
	// User and Password (or PasswordFile) authenticate with a user name.
	User         string
	Password     string
	PasswordFile string
	// Token (or TokenFile) authenticates with a bearer token.
	Token     string
	TokenFile string
	// TLSCA is a PEM file of the CAs that sign the server's certificate
	// (default: the system's roots). Setting it, or TLSCert, requires TLS.
	TLSCA string
	// TLSCert and TLSKey are the client's certificate and key (PEM), for a
	// server that verifies clients; both or neither.
	TLSCert string
	TLSKey  string
}

// Method names the authentication method c selects: "creds", "nkey",
// "user", "token", or "none". An invalid Config (see Options) may name
// several, joined with "+".
func (c Config) Method() string {
	m := c.methods()
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(m, "+")
}

// HasAuth reports whether c selects an authentication method.
func (c Config) HasAuth() bool { return len(c.methods()) > 0 }

// HasTLS reports whether c configures TLS (a CA or a client certificate).
func (c Config) HasTLS() bool { return c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" }

// IsZero reports whether c sets nothing.
func (c Config) IsZero() bool { return c == Config{} }

func (c Config) methods() []string {
	var m []string
	if c.CredsFile != "" {
		m = append(m, "creds")
	}
	if c.NkeyFile != "" {
		m = append(m, "nkey")
	}
	if c.User != "" || c.Password != "" || c.PasswordFile != "" {
		m = append(m, "user")
	}
	if c.Token != "" || c.TokenFile != "" {
		m = append(m, "token")
	}
	return m
}

// Options checks c, reads the files it names and returns the nats.go
// options that apply it. Each error says which setting is wrong and why:
// a file that cannot be read or parsed, a pair given by half (a password
// without a user, a certificate without its key), a secret given both as a
// value and as a file, or two authentication methods at once.
//
// The creds, nkey and TLS files are read again by nats.go at each
// (re)connection, so they may be rotated while a client runs; the password
// and token files are read once, here.
func (c Config) Options() ([]nats.Option, error) {
	var opts []nats.Option
	switch m := c.methods(); {
	case len(m) > 1:
		return nil, fmt.Errorf("conflicting NATS authentication: %s given; use one of nats-creds, nats-nkey, nats-user with nats-password, or nats-token", c.given())
	case c.CredsFile != "":
		if err := checkCreds(c.CredsFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NkeyFile != "":
		// Reads the seed now (a clear error for a bad file) and again at
		// each connection, so the seed is not kept in memory.
		o, err := nats.NkeyOptionFromSeed(c.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot use nats-nkey %s: %w (want a file holding a user nkey seed, SU...)", c.NkeyFile, err)
		}
		opts = append(opts, o)
	case c.User != "" || c.Password != "" || c.PasswordFile != "":
		pass, err := secret("nats-password", c.Password, c.PasswordFile)
		if err != nil {
			return nil, err
		}
		if c.User == "" {
			return nil, errors.New("nats-password given without nats-user")
		}
		if pass == "" {
			return nil, errors.New("nats-user given without nats-password (or nats-password-file)")
		}
		opts = append(opts, nats.UserInfo(c.User, pass))
	case c.Token != "" || c.TokenFile != "":
		tok, err := secret("nats-token", c.Token, c.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(tok))
	}
	tlsOpts, err := c.tlsOptions()
	if err != nil {
		return nil, err
	}
	return append(opts, tlsOpts...), nil
}

// given lists the settings of the methods that are set, for an error.
func (c Config) given() string {
	var g []string
	add := func(name, v string) {
		if v != "" {
			g = append(g, name)
		}
	}
	add("nats-creds", c.CredsFile)
	add("nats-nkey", c.NkeyFile)
	add("nats-user", c.User)
	add("nats-password", c.Password)
	add("nats-password-file", c.PasswordFile)
	add("nats-token", c.Token)
	add("nats-token-file", c.TokenFile)
	return strings.Join(g, ", ")
}

// secret returns a secret given as a value or in a file (secretfile's rule:
// its one non-blank line).
func secret(name, value, file string) (string, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("both %s and %s-file given; use one", name, name)
	}
	if file == "" {
		return value, nil
	}
	s, err := secretfile.Read(file)
	if err != nil {
		return "", fmt.Errorf("cannot read %s-file: %w", name, err)
	}
	return s, nil
}

// checkCreds reads a creds file and checks that it holds a JWT and a user
// seed, so a wrong file is reported at start, not as an authorization
// error from the server.
func checkCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read nats-creds: %w", err)
	}
	defer clear(b)
	// ParseDecoratedJWT returns undecorated content as it is: decoding it
	// tells a JWT from anything else.
	tok, err := nkeys.ParseDecoratedJWT(b)
	if err == nil {
		_, err = jwt.DecodeUserClaims(tok)
	}
	if err != nil {
		return fmt.Errorf("cannot use nats-creds %s: no user JWT in it: %w", path, err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return fmt.Errorf("cannot use nats-creds %s: no user nkey seed in it: %w", path, err)
	}
	kp.Wipe()
	return nil
}

// tlsOptions checks and applies the TLS files.
func (c Config) tlsOptions() ([]nats.Option, error) {
	if !c.HasTLS() {
		return nil, nil
	}
	var opts []nats.Option
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("cannot read nats-tls-ca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cannot use nats-tls-ca %s: no PEM certificate in it", c.TLSCA)
		}
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return nil, errors.New("nats-tls-cert given without nats-tls-key")
	case c.TLSKey != "" && c.TLSCert == "":
		return nil, errors.New("nats-tls-key given without nats-tls-cert")
	case c.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			return nil, fmt.Errorf("cannot use nats-tls-cert %s with nats-tls-key %s: %w", c.TLSCert, c.TLSKey, err)
		}
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	// Secure with no config: nats.go builds one, with the CA and client
	// certificate above, the server name from the URL and TLS 1.2 at least.
	return append(opts, nats.Secure()), nil
}

// URLCredentials says what credentials a comma-separated list of NATS URLs
// carries: "password" (nats://user:pass@host), "token" (nats://token@host)
// or "" for none.
func URLCredentials(urls string) string {
	kind := ""
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			return "password"
		}
		if u.User.Username() != "" {
			kind = "token"
		}
	}
	return kind
}

// Redact returns a comma-separated list of NATS URLs with their passwords
// and tokens replaced by "xxxxx", for logs and errors. (nats.go's
// ConnectedUrlRedacted keeps a token given as the URL's user.) A URL that
// does not parse is replaced whole.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, s := range parts {
		if !strings.Contains(s, "@") {
			continue
		}
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			parts[i] = "(unparsable URL)"
			continue
		}
		if u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// CheckURL refuses credentials given twice: in the URL and by c. nats.go
// would silently use the URL's and ignore c's.
func (c Config) CheckURL(urls string) error {
	if k := URLCredentials(urls); k != "" && c.HasAuth() {
		return fmt.Errorf("the NATS URL %s carries a %s and %s is also given; give the credentials once", Redact(urls), k, c.given())
	}
	return nil
}
