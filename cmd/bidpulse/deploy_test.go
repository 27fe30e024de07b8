package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// The files of deploy/ (a Dockerfile, a systemd unit, Kubernetes manifests)
// are not run by any test here (no docker, no cluster): these tests check
// that they parse, and that every flag and BIDPULSE_* variable they give
// bidpulse is one that `bidpulse serve` has, as its --help lists them.

const deployDir = "../../deploy"

// serveFlagsFromHelp returns serve's flags, each with the environment
// variable its --help names, from the built binary.
func serveFlagsFromHelp(t *testing.T) (flags map[string]string, envs map[string]bool) {
	t.Helper()
	out, err := exec.Command(bidpulseBinary(t), "serve", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("bidpulse serve -h: %v\n%s", err, out)
	}
	_, list, ok := strings.Cut(string(out), "\nFlags")
	if !ok {
		t.Fatalf("bidpulse serve -h lists no flags:\n%s", out)
	}
	flags, envs = map[string]string{}, map[string]bool{}
	envRe := regexp.MustCompile(`env (BIDPULSE_[A-Z0-9_]+)\)`)
	for _, e := range strings.Split(list, "\n  -")[1:] {
		m := envRe.FindStringSubmatch(e)
		if m == nil {
			t.Fatalf("serve -h names no variable for %q", e)
		}
		flags[strings.Fields(e)[0]] = m[1]
		envs[m[1]] = true
	}
	if len(flags) < 10 {
		t.Fatalf("unexpected serve -h: %d flags:\n%s", len(flags), out)
	}
	return flags, envs
}

func readDeployFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// flagNames returns the names of the flags among args (--name, -name,
// --name=value); the words that follow none are values.
func flagNames(args []string) []string {
	var names []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		names = append(names, name)
	}
	return names
}

// flagValue returns the value of flag name in args, the last one winning.
func flagValue(args []string, name string) string {
	var v string
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name && i+1 < len(args) {
			v = args[i+1]
		} else if s, ok := strings.CutPrefix(a, name+"="); ok {
			v = s
		}
	}
	return v
}

// serveArgs returns the words after "serve" in a command line.
func serveArgs(t *testing.T, where string, cmd []string) []string {
	t.Helper()
	for i, w := range cmd {
		if w == "serve" {
			return cmd[i+1:]
		}
	}
	t.Fatalf("%s: %q does not run bidpulse serve", where, cmd)
	return nil
}

// dockerfile is what the tests need of deploy/Dockerfile.
type dockerfile struct {
	stages     int
	user       string   // of the last stage
	entrypoint []string // exec form
	expose     []string
}

func parseDockerfile(t *testing.T, text string) dockerfile {
	t.Helper()
	var d dockerfile
	// Continuation lines join their instruction; comments are dropped.
	var logical []string
	cont := false
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && !cont) {
			continue
		}
		joined := strings.TrimSuffix(trimmed, "\\")
		if cont {
			logical[len(logical)-1] += " " + joined
		} else {
			logical = append(logical, joined)
		}
		cont = strings.HasSuffix(trimmed, "\\")
	}
	known := map[string]bool{"FROM": true, "RUN": true, "COPY": true, "ADD": true, "ENV": true, "ARG": true, "WORKDIR": true,
		"USER": true, "VOLUME": true, "EXPOSE": true, "ENTRYPOINT": true, "CMD": true, "LABEL": true, "HEALTHCHECK": true,
		"STOPSIGNAL": true, "SHELL": true, "ONBUILD": true}
	for _, l := range logical {
		instr, rest, _ := strings.Cut(l, " ")
		instr = strings.ToUpper(instr)
		if !known[instr] {
			t.Fatalf("Dockerfile: unknown instruction %q in %q", instr, l)
		}
		switch instr {
		case "FROM":
			d.stages++
			d.user = ""
		case "USER":
			d.user = strings.TrimSpace(rest)
		case "EXPOSE":
			d.expose = append(d.expose, strings.Fields(rest)...)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("Dockerfile: ENTRYPOINT %s is not the exec form (a JSON array), which receives SIGTERM itself: %v", rest, err)
			}
		}
	}
	return d
}

// unitFile is a systemd unit: its sections' keys and values, continuation
// lines joined.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, text string) unitFile {
	t.Helper()
	u := unitFile{}
	var section, pending string
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if pending != "" {
			line = pending + " " + line
			pending = ""
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			pending = strings.TrimSpace(s)
			continue
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) == "" {
				t.Fatalf("bidpulse.service line %d: not key=value in a section: %q", n+1, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if pending != "" {
		t.Fatal("bidpulse.service ends in a continuation line")
	}
	return u
}

// manifest is what the tests read of a Kubernetes object.
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		ClusterIP   string `yaml:"clusterIP"`
		ServiceName string `yaml:"serviceName"`
		Replicas    int    `yaml:"replicas"`
		Template    struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
}

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			FieldRef struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe probe `yaml:"readinessProbe"`
	LivenessProbe  probe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// readManifests parses every YAML document of deploy/k8s/*.yaml, each also
// generically (the whole document must be YAML), and returns them by kind
// and name.
func readManifests(t *testing.T) map[string]manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under deploy/k8s: %v", err)
	}
	all := map[string]manifest{}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(text)))
		for i := 0; ; i++ {
			var node yaml.Node
			if err := dec.Decode(&node); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var m manifest
			if err := node.Decode(&m); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
				t.Fatalf("%s document %d: want apiVersion, kind and metadata.name; got %q, %q, %q", f, i, m.APIVersion, m.Kind, m.Metadata.Name)
			}
			key := m.Kind + "/" + m.Metadata.Name
			if _, dup := all[key]; dup {
				t.Fatalf("%s: %s defined twice", f, key)
			}
			all[key] = m
		}
	}
	return all
}

// bidpulseStatefulSet returns the bidpulse StatefulSet and its container.
func bidpulseStatefulSet(t *testing.T, all map[string]manifest) (manifest, container) {
	t.Helper()
	sts, ok := all["StatefulSet/bidpulse"]
	if !ok || len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want a StatefulSet bidpulse with one container; got %+v", sts)
	}
	return sts, sts.Spec.Template.Spec.Containers[0]
}

// shutdownTimeout reads bidder's default ShutdownTimeout from its source,
// so that the stop timeouts below follow it.
func shutdownTimeout(t *testing.T) time.Duration {
	t.Helper()
	src, err := os.ReadFile("../../bidder/options.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`o\.ShutdownTimeout = (\d+) \* time\.Second`).FindSubmatch(src)
	if m == nil {
		t.Fatal("cannot find the default ShutdownTimeout in bidder/options.go")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return time.Duration(n) * time.Second
}

// Every flag that deploy/ gives bidpulse serve, and every BIDPULSE_*
// variable named anywhere in deploy/ (comments too), is one of serve's.
func TestDeployFlagsAndEnvExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary for its flag list; skipped in -short mode")
	}
	flags, envs := serveFlagsFromHelp(t)
	uses := map[string][]string{} // file -> flags it passes
	d := parseDockerfile(t, readDeployFile(t, "Dockerfile"))
	uses["Dockerfile"] = flagNames(serveArgs(t, "Dockerfile ENTRYPOINT", d.entrypoint))
	u := parseUnit(t, readDeployFile(t, "bidpulse.service"))
	uses["bidpulse.service"] = flagNames(serveArgs(t, "ExecStart", strings.Fields(strings.Join(u["Service"]["ExecStart"], " "))))
	_, c := bidpulseStatefulSet(t, readManifests(t))
	uses["k8s/bidpulse.yaml"] = flagNames(append(append([]string(nil), c.Command...), c.Args...))
	for file, names := range uses {
		if len(names) == 0 {
			t.Fatalf("%s passes no flag to bidpulse serve: the test reads it wrong", file)
		}
		for _, n := range names {
			if _, ok := flags[n]; !ok {
				t.Fatalf("%s passes --%s, which bidpulse serve does not have", file, n)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(deployDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	k8s, _ := filepath.Glob(filepath.Join(deployDir, "k8s", "*"))
	envRe := regexp.MustCompile(`BIDPULSE_[A-Z0-9_]+`)
	seen := 0
	for _, f := range append(files, k8s...) {
		if fi, err := os.Stat(f); err != nil || fi.IsDir() {
			continue
		}
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range envRe.FindAllString(string(text), -1) {
			seen++
			if !envs[v] {
				t.Fatalf("%s names %s, which no flag of bidpulse serve reads", f, v)
			}
		}
	}
	if seen == 0 {
		t.Fatal("deploy/ names no BIDPULSE_ variable: the test reads it wrong")
	}
}

// The Dockerfile builds in one stage and runs in another as a non-root
// user, serving the port it exposes.
func TestDeployDockerfile(t *testing.T) {
	d := parseDockerfile(t, readDeployFile(t, "Dockerfile"))
	if d.stages < 2 {
		t.Fatalf("unexpected Dockerfile: %d FROM stages; want a build stage and a runtime stage", d.stages)
	}
	if user, _, _ := strings.Cut(d.user, ":"); user == "" || user == "root" || user == "0" {
		t.Fatalf("unexpected USER of the final stage %q; want a non-root user", d.user)
	}
	args := serveArgs(t, "ENTRYPOINT", d.entrypoint)
	_, port, err := net.SplitHostPort(flagValue(args, "http-addr"))
	if err != nil || !strings.Contains(" "+strings.Join(d.expose, " ")+" ", " "+port+" ") {
		t.Fatalf("the ENTRYPOINT's --http-addr port %q is not EXPOSEd (%v): %v", port, d.expose, err)
	}
	if flagValue(args, "data-dir") == "" {
		t.Fatal("the ENTRYPOINT gives no --data-dir: ./data would be relative to the image's working directory")
	}
}

// The unit runs serve as its own user, restarts it on failure, lets it
// write its data dir only, and waits longer than its shutdown for a stop.
func TestDeploySystemdUnit(t *testing.T) {
	u := parseUnit(t, readDeployFile(t, "bidpulse.service"))
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("bidpulse.service has no [%s] section", s)
		}
	}
	svc := u["Service"]
	one := func(k string) string {
		t.Helper()
		if len(svc[k]) != 1 {
			t.Fatalf("bidpulse.service: want one %s; got %q", k, svc[k])
		}
		return svc[k][0]
	}
	args := serveArgs(t, "ExecStart", strings.Fields(one("ExecStart")))
	if user := one("User"); user == "root" || user == "0" {
		t.Fatalf("bidpulse.service runs as %q", user)
	}
	if r := one("Restart"); r != "on-failure" {
		t.Fatalf("unexpected Restart=%s; want on-failure", r)
	}
	one("EnvironmentFile")
	if one("NoNewPrivileges") != "yes" || one("ProtectSystem") != "strict" {
		t.Fatal("bidpulse.service: want NoNewPrivileges=yes and ProtectSystem=strict")
	}
	if dir := flagValue(args, "data-dir"); dir == "" || !strings.Contains(" "+one("ReadWritePaths")+" ", " "+dir+" ") {
		t.Fatalf("the data dir %q of ExecStart is not in ReadWritePaths=%s", dir, one("ReadWritePaths"))
	}
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if st := shutdownTimeout(t); stop <= st {
		t.Fatalf("TimeoutStopSec=%s is not above the service's shutdown timeout %s", stop, st)
	}
}

// The bidpulse StatefulSet keeps its name and data dir across restarts and
// probes the container's port on /readyz and /healthz.
func TestDeployBidpulseStatefulSet(t *testing.T) {
	all := readManifests(t)
	sts, c := bidpulseStatefulSet(t, all)
	if svc, ok := all["Service/"+sts.Spec.ServiceName]; !ok || svc.Spec.ClusterIP != "None" {
		t.Fatalf("serviceName %q is not a headless Service", sts.Spec.ServiceName)
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
		ports[strconv.Itoa(p.ContainerPort)] = true
	}
	f := func(name string, p probe, path string) {
		t.Helper()
		if p.HTTPGet.Path != path || !ports[strings.TrimSpace(strings.Trim(yamlScalar(p.HTTPGet.Port), `"`))] {
			t.Fatalf("unexpected %s probe %+v; want GET %s on a container port %v", name, p.HTTPGet, path, c.Ports)
		}
	}
	f("readiness", c.ReadinessProbe, "/readyz")
	f("liveness", c.LivenessProbe, "/healthz")
	instance := false
	for _, e := range c.Env {
		if e.Name == "BIDPULSE_INSTANCE" && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			instance = true
		}
	}
	if !instance {
		t.Fatal("BIDPULSE_INSTANCE is not the pod's name (fieldRef metadata.name)")
	}
	// The data dir: from the image's entrypoint, unless the manifest's
	// args give another.
	d := parseDockerfile(t, readDeployFile(t, "Dockerfile"))
	dir := flagValue(append(serveArgs(t, "ENTRYPOINT", d.entrypoint), c.Args...), "data-dir")
	claims := map[string]bool{}
	for _, v := range sts.Spec.VolumeClaimTemplates {
		claims[v.Metadata.Name] = true
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || (m.MountPath == dir && claims[m.Name])
	}
	if !mounted {
		t.Fatalf("the data dir %q is not a volumeClaimTemplate's mount", dir)
	}
	pod := sts.Spec.Template.Spec
	if !pod.SecurityContext.RunAsNonRoot {
		t.Fatal("the pod does not set runAsNonRoot")
	}
	if grace, st := time.Duration(pod.TerminationGracePeriodSeconds)*time.Second, shutdownTimeout(t); grace <= st {
		t.Fatalf("terminationGracePeriodSeconds %s is not above the service's shutdown timeout %s", grace, st)
	}
}

// yamlScalar prints a probe's port, a name or a number.
func yamlScalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	}
	return ""
}

// The NATS config parses with the nats-server bidpulse is built with; its
// routes name each pod of the NATS StatefulSet by its headless Service, its
// store is on the pod's volume, and bidpulse's BIDPULSE_NATS_URL names the
// same pods on the client port.
func TestDeployNATSCluster(t *testing.T) {
	all := readManifests(t)
	cm, ok := all["ConfigMap/nats-config"]
	if !ok || cm.Data["nats.conf"] == "" {
		t.Fatal("want a ConfigMap nats-config with nats.conf")
	}
	sts, ok := all["StatefulSet/nats"]
	if !ok || sts.Spec.Replicas != 3 || len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want a StatefulSet nats of 3 replicas and one container; got %+v", sts)
	}
	if svc, ok := all["Service/"+sts.Spec.ServiceName]; !ok || svc.Spec.ClusterIP != "None" {
		t.Fatalf("the nats serviceName %q is not a headless Service", sts.Spec.ServiceName)
	}
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte(cm.Data["nats.conf"]), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "nats-0")
	o, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats.conf: %v", err)
	}
	if !o.JetStream || o.ServerName != "nats-0" || o.Cluster.Name == "" {
		t.Fatalf("nats.conf: want JetStream, server_name from $POD_NAME and a cluster name; got %v, %q, %q", o.JetStream, o.ServerName, o.Cluster.Name)
	}
	pods := map[string]bool{}
	for i := range sts.Spec.Replicas {
		pods[sts.Metadata.Name+"-"+strconv.Itoa(i)+"."+sts.Spec.ServiceName] = true
	}
	routes := map[string]bool{}
	for _, r := range o.Routes {
		if !pods[r.Hostname()] || r.Port() != strconv.Itoa(o.Cluster.Port) {
			t.Fatalf("nats.conf route %s is not a NATS pod on the cluster port %d", r, o.Cluster.Port)
		}
		routes[r.Hostname()] = true
	}
	if len(routes) != len(pods) {
		t.Fatalf("nats.conf routes %v; want one to each of %v", o.Routes, pods)
	}
	mounted := false
	for _, m := range sts.Spec.Template.Spec.Containers[0].VolumeMounts {
		for _, v := range sts.Spec.VolumeClaimTemplates {
			mounted = mounted || (m.Name == v.Metadata.Name && strings.HasPrefix(o.StoreDir, m.MountPath))
		}
	}
	if !mounted {
		t.Fatalf("the JetStream store %q is not on a volumeClaimTemplate", o.StoreDir)
	}
	_, c := bidpulseStatefulSet(t, all)
	var urls string
	for _, e := range c.Env {
		if e.Name == "BIDPULSE_NATS_URL" {
			urls = e.Value
		}
	}
	named := map[string]bool{}
	for _, s := range strings.Split(urls, ",") {
		u, err := url.Parse(s)
		if err != nil || !pods[u.Hostname()] || u.Port() != strconv.Itoa(o.Port) {
			t.Fatalf("BIDPULSE_NATS_URL %q: %q is not a NATS pod on the client port %d (%v)", urls, s, o.Port, err)
		}
		named[u.Hostname()] = true
	}
	if len(named) != len(pods) {
		t.Fatalf("BIDPULSE_NATS_URL %q; want each of %v", urls, pods)
	}
}
