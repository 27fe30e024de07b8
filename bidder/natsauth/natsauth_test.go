package natsauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/bidpulse/bidpulse/internal/testcert"
)

// startServer starts a nats-server on a random loopback port with the
// options edit sets, and returns its client URL.
func startServer(t *testing.T, edit func(o *server.Options)) string {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true}
	edit(o)
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatalf("cannot create server: %v", err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready after 10s")
	}
	return srv.ClientURL()
}

// connect connects to url with c's options and a short timeout, so a
// refused connection fails fast.
func connect(url string, c Config) (*nats.Conn, error) {
	opts, err := c.Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	return nats.Connect(url, opts...)
}

// mustConnect checks that c connects to url and can round-trip a message.
func mustConnect(t *testing.T, url string, c Config) {
	t.Helper()
	nc, err := connect(url, c)
	if err != nil {
		t.Fatalf("cannot connect with %s: %v", c.Method(), err)
	}
	defer nc.Close()
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("cannot flush with %s: %v", c.Method(), err)
	}
}

// mustRefuse checks that the server refuses c as an authorization violation.
func mustRefuse(t *testing.T, url string, c Config) {
	t.Helper()
	nc, err := connect(url, c)
	if err == nil {
		nc.Close()
		t.Fatalf("unexpected connection with %s (%+v); want an authorization violation", c.Method(), c)
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("unexpected error with %s; got %v; want %v", c.Method(), err, nats.ErrAuthorization)
	}
	t.Logf("refused as expected: %v", err)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("cannot write %s: %v", p, err)
	}
	return p
}

func TestNkey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	url := startServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	mustConnect(t, url, Config{NkeyFile: writeFile(t, "user.nk", string(seed)+"\n")})
	mustRefuse(t, url, Config{})
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	mustRefuse(t, url, Config{NkeyFile: writeFile(t, "other.nk", string(otherSeed))})
}

func TestUserPassword(t *testing.T) {
	url := startServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "producer", Password: "s3cret"}}
	})
	mustConnect(t, url, Config{User: "producer", Password: "s3cret"})
	// A file's trailing line break is not part of the password.
	mustConnect(t, url, Config{User: "producer", PasswordFile: writeFile(t, "pass", "s3cret\n")})
	mustRefuse(t, url, Config{})
	mustRefuse(t, url, Config{User: "producer", Password: "wrong"})
}

func TestToken(t *testing.T) {
	url := startServer(t, func(o *server.Options) { o.Authorization = "t0ken" })
	mustConnect(t, url, Config{Token: "t0ken"})
	mustConnect(t, url, Config{TokenFile: writeFile(t, "token", "t0ken\r\n")})
	mustRefuse(t, url, Config{})
	mustRefuse(t, url, Config{Token: "other"})
}

func TestCreds(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	account := func() (nkeys.KeyPair, string, string) {
		akp, _ := nkeys.CreateAccount()
		apub, _ := akp.PublicKey()
		ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
		if err != nil {
			t.Fatalf("cannot encode account: %v", err)
		}
		return akp, apub, ajwt
	}
	akp, apub, ajwt := account()
	_, spub, sjwt := account()
	oc.SystemAccount = spub
	if _, err := oc.Encode(okp); err != nil {
		t.Fatalf("cannot encode operator: %v", err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatalf("cannot encode user: %v", err)
	}
	useed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	resolver.Store(apub, ajwt)
	resolver.Store(spub, sjwt)
	url := startServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{oc}
		o.AccountResolver = resolver
		o.SystemAccount = spub
	})
	mustConnect(t, url, Config{CredsFile: writeFile(t, "user.creds", string(creds))})
	mustRefuse(t, url, Config{})
	// An nkey alone is not enough for a server that wants a JWT.
	mustRefuse(t, url, Config{NkeyFile: writeFile(t, "user.nk", string(useed))})
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, dir, "nats")
	srvCert, srvKey := ca.Server(t, "server")
	cliCert, cliKey := ca.Client(t, "client")
	other := testcert.NewCA(t, dir, "other")
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.CAFile)
	pool.AppendCertsFromPEM(pem)

	t.Run("server", func(t *testing.T) {
		url := startServer(t, func(o *server.Options) {
			o.TLS, o.TLSTimeout = true, 2
			o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		})
		mustConnect(t, url, Config{TLSCA: ca.CAFile})
		for _, c := range []Config{{}, {TLSCA: other.CAFile}} {
			nc, err := connect(url, c)
			if err == nil {
				nc.Close()
				t.Fatalf("unexpected connection without the server's CA (%+v)", c)
			}
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) && !errors.Is(err, nats.ErrSecureConnRequired) {
				t.Fatalf("unexpected error without the server's CA; got %v; want an unknown authority", err)
			}
			t.Logf("refused as expected: %v", err)
		}
	})
	t.Run("client certificate", func(t *testing.T) {
		url := startServer(t, func(o *server.Options) {
			o.TLS, o.TLSVerify, o.TLSTimeout = true, true, 2
			o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
				ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
		})
		mustConnect(t, url, Config{TLSCA: ca.CAFile, TLSCert: cliCert, TLSKey: cliKey})
		nc, err := connect(url, Config{TLSCA: ca.CAFile})
		if err == nil {
			nc.Close()
			t.Fatal("unexpected connection without a client certificate")
		}
		t.Logf("refused as expected: %v", err)
	})
}

func TestOptionsErrors(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	nkey := writeFile(t, "user.nk", string(seed))
	missing := filepath.Join(t.TempDir(), "missing")
	f := func(c Config, want string) {
		t.Helper()
		_, err := c.Options()
		if err == nil {
			t.Fatalf("unexpected success of %+v; want an error with %q", c, want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error of %+v; got %q; want it to contain %q", c, err, want)
		}
	}
	f(Config{NkeyFile: nkey, Token: "t"}, "conflicting NATS authentication: nats-nkey, nats-token given")
	f(Config{CredsFile: missing, User: "u", Password: "p"}, "conflicting NATS authentication")
	f(Config{Password: "p"}, "nats-password given without nats-user")
	f(Config{User: "u"}, "nats-user given without nats-password")
	f(Config{User: "u", Password: "p", PasswordFile: nkey}, "both nats-password and nats-password-file given")
	f(Config{User: "u", PasswordFile: missing}, "cannot read nats-password-file")
	f(Config{User: "u", PasswordFile: writeFile(t, "empty", "\n")}, "holds no secret")
	f(Config{Token: "t", TokenFile: nkey}, "both nats-token and nats-token-file given")
	f(Config{TokenFile: missing}, "cannot read nats-token-file")
	f(Config{NkeyFile: missing}, "cannot use nats-nkey")
	f(Config{NkeyFile: writeFile(t, "bad.nk", "not a seed")}, "cannot use nats-nkey")
	f(Config{CredsFile: missing}, "cannot read nats-creds")
	f(Config{CredsFile: nkey}, "no user JWT in it")
	f(Config{TLSCert: nkey}, "nats-tls-cert given without nats-tls-key")
	f(Config{TLSKey: nkey}, "nats-tls-key given without nats-tls-cert")
	f(Config{TLSCA: missing}, "cannot read nats-tls-ca")
	f(Config{TLSCA: nkey}, "no PEM certificate")
	f(Config{TLSCert: nkey, TLSKey: nkey}, "cannot use nats-tls-cert")

	if opts, err := (Config{}).Options(); err != nil || len(opts) != 0 {
		t.Fatalf("unexpected options of the zero Config; got %d, %v; want none", len(opts), err)
	}
}

func TestURLCredentials(t *testing.T) {
	f := func(urls, kind, redacted string) {
		t.Helper()
		if got := URLCredentials(urls); got != kind {
			t.Fatalf("unexpected URLCredentials(%q); got %q; want %q", urls, got, kind)
		}
		if got := Redact(urls); got != redacted {
			t.Fatalf("unexpected Redact(%q); got %q; want %q", urls, got, redacted)
		}
	}
	f("nats://127.0.0.1:4222", "", "nats://127.0.0.1:4222")
	f("nats://u:pw@h1:4222,nats://h2:4222", "password", "nats://u:xxxxx@h1:4222,nats://h2:4222")
	f("nats://h1:4222,tls://tok@h2:4222", "token", "nats://h1:4222,tls://xxxxx@h2:4222")
	f("", "", "")

	if err := (Config{Token: "t"}).CheckURL("nats://u:pw@h:4222"); err == nil || strings.Contains(err.Error(), "pw") {
		t.Fatalf("unexpected CheckURL error; got %v; want one that names no password", err)
	}
	if err := (Config{TLSCA: "ca.pem"}).CheckURL("nats://u:pw@h:4222"); err != nil {
		t.Fatalf("unexpected CheckURL error with TLS only: %v", err)
	}
}
