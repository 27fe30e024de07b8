package main

import (
	"flag"
	"strings"

	"github.com/bidpulse/bidpulse/bidder/natsauth"
)

// natsClientFlags registers the NATS client security flags shared by serve
// (for --nats-url only: the embedded server's users are its own), publish
// and bench, and returns the Config they fill. Like
// every flag, each is also read from BIDPULSE_<NAME> (BIDPULSE_NATS_PASSWORD,
// ...); the secrets also from a file, so none has to be on the command line.
func natsClientFlags(fs *flag.FlagSet) *natsauth.Config {
	c := &natsauth.Config{}
	fs.StringVar(&c.CredsFile, "nats-creds", "", "NATS client: .creds file (user JWT and nkey seed)")
	fs.StringVar(&c.NkeyFile, "nats-nkey", "", "NATS client: file holding a user nkey seed, such as the producer.nk that serve --nats-auth on writes under --data-dir/nats-auth")
	fs.StringVar(&c.User, "nats-user", "", "NATS client: user name, with --nats-password or --nats-password-file")
	fs.StringVar(&c.Password, "nats-password", "", "NATS client: password; prefer BIDPULSE_NATS_PASSWORD or --nats-password-file (a flag's value shows in the process list)")
	fs.StringVar(&c.PasswordFile, "nats-password-file", "", "NATS client: file holding the password")
	fs.StringVar(&c.Token, "nats-token", "", "NATS client: token; prefer BIDPULSE_NATS_TOKEN or --nats-token-file (a flag's value shows in the process list)")
	fs.StringVar(&c.TokenFile, "nats-token-file", "", "NATS client: file holding the token")
	fs.StringVar(&c.TLSCA, "nats-tls-ca", "", "NATS client: PEM file of the CAs that sign the server's certificate (turns TLS on; default with tls:// URLs: the system's CAs)")
	fs.StringVar(&c.TLSCert, "nats-tls-cert", "", "NATS client: PEM certificate for a server that verifies clients (with --nats-tls-key; turns TLS on)")
	fs.StringVar(&c.TLSKey, "nats-tls-key", "", "NATS client: PEM key of --nats-tls-cert")
	return c
}

// natsSecretWarnings returns a warning for each NATS secret given where
// others can read it: in the URL, or as --nats-password or --nats-token on
// the command line (args). The warnings name no secret.
func natsSecretWarnings(args []string, urls string) []string {
	var w []string
	switch natsauth.URLCredentials(urls) {
	case "password":
		w = append(w, "the NATS URL "+natsauth.Redact(urls)+" carries a password, which shows in the process list, shell history and configs: "+
			"give the user with --nats-user and the password with BIDPULSE_NATS_PASSWORD or --nats-password-file instead")
	case "token":
		w = append(w, "the NATS URL "+natsauth.Redact(urls)+" carries a token, which shows in the process list, shell history and configs: "+
			"give it with BIDPULSE_NATS_TOKEN or --nats-token-file instead")
	}
	for _, name := range []string{"nats-password", "nats-token"} {
		if onCommandLine(args, name) {
			w = append(w, "--"+name+" on the command line shows in the process list: use "+envName(name)+" or --"+name+"-file instead")
		}
	}
	return w
}

// onCommandLine reports whether the flag name is among args (-name,
// --name, -name=..., --name=...), as opposed to set from the environment.
func onCommandLine(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
