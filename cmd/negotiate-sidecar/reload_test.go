package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// k8sSecretDir lays out a directory the way the kubelet mounts a Secret:
// the file is a symlink into "..data", itself a symlink to a timestamped
// directory, and an update swaps "..data" atomically.
type k8sSecretDir struct {
	t    *testing.T
	dir  string
	gen  int
	name string
}

func newK8sSecretDir(t *testing.T, name, content string) *k8sSecretDir {
	d := &k8sSecretDir{t: t, dir: t.TempDir(), name: name}
	d.update(content)
	if err := os.Symlink(filepath.Join("..data", name), filepath.Join(d.dir, name)); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *k8sSecretDir) path() string { return filepath.Join(d.dir, d.name) }

func (d *k8sSecretDir) update(content string) {
	d.t.Helper()
	d.gen++
	gen := fmt.Sprintf("..2026_11_27_%02d", d.gen)
	if err := os.Mkdir(filepath.Join(d.dir, gen), 0o755); err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, gen, d.name), []byte(content), 0o644); err != nil {
		d.t.Fatal(err)
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		d.t.Fatal(err)
	}
}

// eventuallyStatus polls a negotiate until it answers want.
func eventuallyStatus(t *testing.T, url, token string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := negotiate(t, url, token)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("negotiate kept answering %d (%s), want %d", code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnectionStringRotationWithoutRestart(t *testing.T) {
	const oldKey, newKey = "b2xkLWtleS1iZWZvcmUtdGhlLXJvdGF0aW9uLXRlc3Q=", "bmV3LWtleS1hZnRlci10aGUtcm90YXRpb24tdGVzdA=="
	idp := newTestIDP(t)
	var signWith atomic.Value
	signWith.Store(oldKey)
	const aud = "https://rot.service.signalr.net/client/?hub=chat"
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "aud": aud}).SignedString([]byte(signWith.Load().(string)))
		fmt.Fprintf(w, `{"url":"https://rot.service.signalr.net/client/?hub=chat","accessToken":%q}`, tok)
	}))
	defer app.Close()

	cs := func(key string) string {
		return "Endpoint=https://rot.service.signalr.net;AccessKey=" + key + ";Version=1.0;\n"
	}
	secret := newK8sSecretDir(t, "connection-string", cs(oldKey))
	r := startRun(t, nil, "--upstream", app.URL, "--issuer", idp.URL, "--audience", "api://app",
		"--connection-string-file", secret.path(), "--reload-interval", "100ms")
	waitStatus(t, r.admin+"/readyz", 200)
	url := r.proxy + "/api/negotiate"
	user := idp.mint(t, "u1")
	eventuallyStatus(t, url, user, 200)

	// The app's key is rotated first: its tokens no longer verify with the
	// key we hold, and we refuse them rather than sign them.
	signWith.Store(newKey)
	if code, _ := negotiate(t, url, user); code != 502 {
		t.Fatalf("token signed with a key we do not hold: %d, want 502", code)
	}
	// Then the secret is updated through the kubelet's symlink swap.
	secret.update(cs(newKey))
	eventuallyStatus(t, url, user, 200)

	// A broken update is refused; the running keys stay.
	secret.update("Endpoint=https://rot.service.signalr.net;AccessKey=")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.logs.String(), "configuration change not applied") {
		if time.Now().After(deadline) {
			t.Fatalf("no error logged for the broken update:\n%s", r.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := negotiate(t, url, user); code != 200 {
		t.Errorf("after a broken update: %d, want 200 with the last good keys", code)
	}
	_, metrics := get(t, r.admin+"/metrics")
	for _, want := range []string{`negotiate_sidecar_config_reloads_total{result="success"} 1`, `negotiate_sidecar_config_reloads_total{result="failure"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, k := range []string{oldKey, newKey} {
		if strings.Contains(r.logs.String(), k) {
			t.Fatal("the logs contain an access key")
		}
	}
}

func TestConfigFileReload(t *testing.T) {
	idp := newTestIDP(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"url":"https://unit.service.signalr.net/client/?hub=chat","accessToken":%q}`, signalRToken("https://unit.service.signalr.net/client/?hub=chat"))
	}))
	defer app.Close()
	file := func(audiences string) string {
		return fmt.Sprintf(`upstream: %s
providers:
  - name: test
    issuer: %s
    audiences: [%s]
signalr:
  connection_strings:
    - "Endpoint=https://unit.service.signalr.net;AccessKey=%s"
`, app.URL, idp.URL, audiences, testAccessKey)
	}
	cfg := newK8sSecretDir(t, "config.yaml", file("api://app"))
	r := startRun(t, nil, "--config", cfg.path(), "--reload-interval", "100ms")
	waitStatus(t, r.admin+"/readyz", 200)
	url := r.proxy + "/api/negotiate"

	other := idp.mintFor(t, "u1", "api://other")
	if code, _ := negotiate(t, url, other); code != 401 {
		t.Fatalf("token for an audience not configured yet: %d, want 401", code)
	}
	cfg.update(file("api://app, api://other"))
	eventuallyStatus(t, url, other, 200)

	// A misspelt key is refused with its line, and the old settings stay.
	cfg.update(strings.Replace(file("api://app, api://other"), "audiences:", "audience:", 1))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.logs.String(), `line 5: unknown key \"audience\"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the misspelt key was not reported:\n%s", r.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := negotiate(t, url, other); code != 200 {
		t.Errorf("after a bad config: %d, want 200", code)
	}
}
