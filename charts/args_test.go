package charts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/chart"
	corev1 "k8s.io/api/core/v1"
)

// fakeConnectionString stands for every Secret the sidecar reads: the connection string is the only secret
// it needs, from its environment or from a mounted file.
const fakeConnectionString = "Endpoint=https://example.service.signalr.net;AccessKey=ZmFrZS1rZXktZm9yLWNoYXJ0LXRlc3Rz;Version=1.0;"

// hostTemplate adds the sidecar to a Deployment of its own when the chart's workload is off, as a parent
// chart does with the chart's named templates, so that scenarios that render only the ConfigMap and Secret
// are checked with the container another chart would run.
const hostTemplate = `{{- if not .Values.workload.enabled }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: args-test-host
spec:
  selector:
    matchLabels:
      app: args-test-host
  template:
    metadata:
      labels:
        app: args-test-host
    spec:
      {{- if .Values.nativeSidecar }}
      initContainers:
        {{- include "negotiate-sidecar.container" . | nindent 8 }}
      containers:
        - name: app
          image: app
      {{- else }}
      containers:
        - name: app
          image: app
        {{- include "negotiate-sidecar.container" . | nindent 8 }}
      {{- end }}
      {{- with include "negotiate-sidecar.volumes" . }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
{{- end }}
`

// TestChartArgsAccepted runs the real sidecar's check subcommand with the arguments, environment and
// configuration file the chart gives the sidecar container in each ci/*-values.yaml scenario, and requires
// the configuration to be accepted: every flag known, every value valid, the file's keys known. The network
// checks that follow (identity providers, the app) fail here, which is expected: only the configuration
// matters.
func TestChartArgsAccepted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("runs the sidecar's Linux build")
	}
	if testing.Short() {
		t.Skip("builds and runs the sidecar")
	}
	bin := buildSidecar(t)

	for _, f := range ciValuesFiles(t) {
		t.Run(scenarioName(f), func(t *testing.T) {
			sr := prepareSidecarRun(t, readValues(t, f))
			stdout, stderr := sr.check(t, bin)
			if problems := configProblems(stdout, stderr); len(problems) > 0 {
				t.Errorf("the sidecar refuses the chart's configuration:\n  %s\nargs: %q\nstdout:\n%s\nstderr:\n%s",
					strings.Join(problems, "\n  "), sr.args, stdout, stderr)
			}
		})
	}

	// The controls prove that a refusal is seen: a flag the sidecar does not know, and a key its
	// configuration file does not have.
	t.Run("negative", func(t *testing.T) {
		t.Run("unknown-flag", func(t *testing.T) {
			sr := prepareSidecarRun(t, readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml")))
			sr.args = append(sr.args, "--no-such-flag")
			stdout, stderr := sr.check(t, bin)
			problems := configProblems(stdout, stderr)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "unknown flag --no-such-flag") }) {
				t.Errorf("--no-such-flag not reported; problems %q\nstdout:\n%s\nstderr:\n%s", problems, stdout, stderr)
			}
		})
		t.Run("unknown-config-key", func(t *testing.T) {
			sr := prepareSidecarRun(t, readValues(t, filepath.Join(chartDir, "ci", "extras-values.yaml")))
			if sr.configFile == "" {
				t.Fatal("the extras scenario passes no --config")
			}
			data, err := os.ReadFile(sr.configFile)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(sr.configFile, append(data, "no_such_key: true\n"...), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr := sr.check(t, bin)
			problems := configProblems(stdout, stderr)
			if !slices.ContainsFunc(problems, func(p string) bool {
				return strings.HasPrefix(p, "FAIL  configuration") && strings.Contains(p, "no_such_key")
			}) {
				t.Errorf("the unknown key is not reported; problems %q\nstdout:\n%s\nstderr:\n%s", problems, stdout, stderr)
			}
		})
	})
}

// buildSidecar builds the sidecar with the go build command of the Dockerfile's build stage, in the
// repository itself (TestDockerfileBuild checks the build from the Dockerfile's copy of the sources).
func buildSidecar(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	df := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	var build *buildCommand
	for _, in := range df.stages[0].instructions {
		if in.keyword != "RUN" {
			continue
		}
		if bc := parseRun(t, in, buildArgs()); slices.Equal(bc.argv[:min(2, len(bc.argv))], []string{"go", "build"}) {
			build = &bc
		}
	}
	if build == nil {
		t.Fatal("the Dockerfile's build stage has no go build")
	}
	bin := filepath.Join(t.TempDir(), "negotiate-sidecar")
	argv := slices.Clone(build.argv)
	argv[0] = goBin
	i := slices.Index(argv, "-o")
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("go build %q has no -o", build.argv)
	}
	argv[i+1] = bin
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), build.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(build.argv, " "), err, out)
	}
	return bin
}

// sidecarRun is the sidecar container of a rendered scenario, made runnable on this machine.
type sidecarRun struct {
	args []string
	env  []string
	dir  string
	// configFile is this machine's copy of the configuration file --config names, if any.
	configFile string
}

// prepareSidecarRun renders the chart with the values and turns its sidecar container into a command of
// this machine: the pod volumes the container mounts become directories holding what the release puts in
// them, the paths into them are rewritten to those directories, Kubernetes' $(VAR) references in the
// arguments are expanded, and the identity providers' URLs are rewritten to loopback addresses.
func prepareSidecarRun(t *testing.T, values map[string]any) *sidecarRun {
	t.Helper()
	c := loadChart(t, chartDir)
	c.Templates = append(c.Templates, &chart.File{Name: "templates/args-test-host.yaml", Data: []byte(hostTemplate)})
	r, err := render(c, values, kubeVersion)
	if err != nil {
		t.Fatalf("rendering: %v", err)
	}
	o := decode(t, r.manifests)
	if len(o.deployments) != 1 {
		t.Fatalf("%d Deployments rendered, want 1 holding the sidecar", len(o.deployments))
	}
	pod := o.deployments[0].Spec.Template.Spec
	sc, _ := findSidecar(t, pod, str(t, r.chartValues(t, ""), "sidecar.name"))
	if len(sc.Command) > 0 || len(sc.EnvFrom) > 0 {
		t.Fatalf("sidecar command %q, envFrom %v: this test runs the image's entrypoint with env only", sc.Command, sc.EnvFrom)
	}

	sr := &sidecarRun{dir: t.TempDir()}
	rw := &rewriter{mounts: map[string]string{}, hosts: map[string]string{}}
	populated := map[string]string{}
	for _, m := range sc.VolumeMounts {
		dir, ok := populated[m.Name]
		if !ok {
			dir = filepath.Join(sr.dir, "volumes", m.Name)
			populateVolume(t, dir, findVolume(t, pod, m.Name), o)
			populated[m.Name] = dir
		}
		rw.mounts[m.MountPath] = filepath.Join(dir, m.SubPath)
	}

	vars := map[string]string{}
	for _, e := range sc.Env {
		val := e.Value
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.SecretKeyRef != nil:
			val = fakeConnectionString
		default:
			t.Fatalf("env %s: only value and secretKeyRef are supported here, not %+v", e.Name, e.ValueFrom)
		}
		if flag, ok := strings.CutPrefix(e.Name, "NEGOTIATE_SIDECAR_"); ok {
			flag = strings.ToLower(strings.ReplaceAll(flag, "_", "-"))
			items := strings.Split(val, ",")
			for i := range items {
				items[i] = rw.value(flag, items[i])
			}
			val = strings.Join(items, ",")
			if flag == "config" {
				sr.configFile = val
			}
		}
		vars[e.Name] = val
		sr.env = append(sr.env, e.Name+"="+val)
	}
	// A second guard: HTTP the sidecar makes to a host the rewrites missed goes to a loopback port where
	// nothing listens, instead of leaving the machine (Go does not proxy loopback addresses).
	sr.env = append(sr.env, "PATH="+os.Getenv("PATH"), "HOME="+os.Getenv("HOME"),
		"HTTP_PROXY=http://127.0.0.1:1", "HTTPS_PROXY=http://127.0.0.1:1", "NO_PROXY=")

	prev := ""
	for _, a := range sc.Args {
		a = expandK8sVars(a, vars)
		if strings.HasPrefix(a, "-") {
			name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
			prev = ""
			if !hasVal {
				prev = name
			} else {
				val = rw.value(name, val)
				a = a[:strings.Index(a, "=")+1] + val
				if name == "config" {
					sr.configFile = val
				}
			}
		} else {
			a = rw.value(prev, a)
			if prev == "config" {
				sr.configFile = a
			}
			prev = ""
		}
		sr.args = append(sr.args, a)
	}
	if sr.configFile != "" {
		rw.rewriteConfig(t, sr.configFile)
	}
	return sr
}

// findVolume returns the pod volume of a volume mount.
func findVolume(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("the sidecar mounts volume %s, which the pod does not have", name)
	return corev1.Volume{}
}

// populateVolume writes into dir what the volume holds in the pod: a ConfigMap the release renders with its
// data, a Secret with the fake connection string in each of its keys (from the volume's items, else from
// the Secret when the release renders it). Other volumes start empty.
func populateVolume(t *testing.T, dir string, v corev1.Volume, o objects) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{} // path in the volume → content
	paths := func(items []corev1.KeyToPath, keys []string) map[string]string {
		out := map[string]string{}
		if len(items) == 0 {
			for _, k := range keys {
				out[k] = k
			}
		}
		for _, it := range items {
			out[it.Key] = it.Path
		}
		return out
	}
	switch {
	case v.ConfigMap != nil:
		for _, cm := range o.configMaps {
			if cm.Name != v.ConfigMap.Name {
				continue
			}
			keys := make([]string, 0, len(cm.Data))
			for k := range cm.Data {
				keys = append(keys, k)
			}
			for k, p := range paths(v.ConfigMap.Items, keys) {
				files[p] = cm.Data[k]
			}
		}
	case v.Secret != nil:
		var keys []string
		for _, s := range o.secrets {
			if s.Name == v.Secret.SecretName {
				for k := range s.Data {
					keys = append(keys, k)
				}
				for k := range s.StringData {
					keys = append(keys, k)
				}
			}
		}
		for _, p := range paths(v.Secret.Items, keys) {
			files[p] = fakeConnectionString + "\n"
		}
	}
	for p, content := range files {
		path := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// expandK8sVars expands $(VAR) in a container argument as the kubelet does: a variable of the container's
// environment is replaced by its value, an unknown one is left as written, and $$ is a literal $.
func expandK8sVars(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				if v, ok := vars[s[i+2:i+2+end]]; ok {
					b.WriteString(v)
					i += 2 + end
					continue
				}
			}
			b.WriteByte('$')
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// rewriter makes a container's paths and the identity providers' URLs those of this machine.
//
// check fetches each identity provider's keys (OpenID Connect discovery at the issuer, or the JWKS URLs),
// and the scenarios name real hosts such as login.microsoftonline.com. The test checks that the sidecar
// accepts the configuration's shape, not that the providers are reachable, and must not reach beyond this
// machine, so each URL's host is replaced by a loopback address on port 1, where nothing listens. Scheme,
// path and query stay as written, and each original host gets its own address, so that issuers and the
// provider names derived from their hosts stay as distinct as they were.
type rewriter struct {
	mounts map[string]string // mount path in the container → directory on this machine
	hosts  map[string]string // host of an identity provider URL → the loopback address standing for it
}

// urlFlags are the flags, and urlKeys the configuration file's keys, that name identity provider URLs.
var (
	urlFlags = map[string]bool{"issuer": true, "jwks-url": true}
	urlKeys  = map[string]bool{"issuer": true, "jwks_urls": true}
)

// value rewrites the value of a flag: a URL of an identity provider, or a path into a mounted volume.
func (rw *rewriter) value(flag, v string) string {
	if urlFlags[flag] {
		return rw.url(v)
	}
	return rw.path(v)
}

func (rw *rewriter) url(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return v // nothing to connect to; the sidecar judges it as written
	}
	lo, ok := rw.hosts[u.Host]
	if !ok {
		lo = fmt.Sprintf("127.0.0.%d:1", len(rw.hosts)+1)
		rw.hosts[u.Host] = lo
	}
	u.Host = lo
	return u.String()
}

func (rw *rewriter) path(p string) string {
	best := ""
	for mp := range rw.mounts {
		if (p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	if best == "" {
		return p
	}
	return filepath.Join(rw.mounts[best], strings.TrimPrefix(p, best))
}

// rewriteConfig rewrites, in this machine's copy of the configuration file, the identity providers' URLs
// and the paths into mounted volumes. A file that needs no rewriting is left byte for byte as rendered.
func (rw *rewriter) rewriteConfig(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("--config names %s, which the mounted volumes do not hold: %v", path, err)
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		return // the sidecar reports it
	}
	changed := false
	set := func(n *yamlv3.Node, f func(string) string) {
		if n.Kind == yamlv3.ScalarNode && n.Tag == "!!str" {
			if v := f(n.Value); v != n.Value {
				n.Value, changed = v, true
			}
		}
	}
	var walk func(n *yamlv3.Node, isURL bool)
	walk = func(n *yamlv3.Node, isURL bool) {
		switch n.Kind {
		case yamlv3.ScalarNode:
			if isURL {
				set(n, rw.url)
			} else {
				set(n, rw.path)
			}
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], urlKeys[n.Content[i].Value])
			}
		default:
			for _, c := range n.Content {
				walk(c, isURL)
			}
		}
	}
	walk(&doc, false)
	if !changed {
		return
	}
	out, err := yamlv3.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// check runs `<bin> check <args>` and returns its output.
func (sr *sidecarRun) check(t *testing.T, bin string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"check"}, sr.args...)...)
	cmd.Dir = sr.dir
	cmd.Env = sr.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("check did not finish in 30s\nstdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	}
	// check exits non-zero here because the network checks fail; only the report tells about the
	// configuration.
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return out.String(), errOut.String()
}

// configProblems reads check's output for a refused configuration: a flag the sidecar does not know, a
// value it cannot parse, a FAIL line about the configuration, or no ok line for it.
func configProblems(stdout, stderr string) []string {
	var problems []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "unknown flag") || strings.Contains(line, "flag provided but not defined") || strings.Contains(line, "invalid value") {
			problems = append(problems, strings.TrimSpace(line))
		}
	}
	ok := false
	for _, line := range strings.Split(stdout, "\n") {
		switch {
		case strings.HasPrefix(line, "ok    configuration"):
			ok = true
		case strings.HasPrefix(line, "FAIL  configuration"), strings.Contains(line, "invalid value"):
			problems = append(problems, strings.TrimSpace(line))
		}
	}
	if !ok {
		problems = append(problems, "no \"ok    configuration\" line")
	}
	return problems
}
