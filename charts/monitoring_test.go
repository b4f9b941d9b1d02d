package charts

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

// dashboardFile is the key of the dashboard in its ConfigMap.
const dashboardFile = "negotiate-sidecar.json"

// grafanaVars stand in for the dashboard's variables, so that its queries parse as plain PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", "apps", "$job", "chat-metrics")

// TestChartMonitoring renders the dashboard and the alerts, parses every query with Prometheus' own PromQL
// parser, and checks that each metric they name is one the real sidecar exports, that the alerts select
// exactly this release's series, and that the dashboard shows what an operator looks for.
func TestChartMonitoring(t *testing.T) {
	r := mustRender(t, chartDir, readValues(t, filepath.Join(chartDir, "ci", "extras-values.yaml")))
	o := decode(t, r.manifests)
	dashboard, rule := monitoringObjects(t, o)
	metricsService := ""
	for _, s := range o.services {
		if s.Labels["app.kubernetes.io/component"] == "metrics" {
			metricsService = s.Name
		}
	}

	queries := map[string]string{} // where -> PromQL
	for _, p := range dashboard.Panels {
		for _, tg := range p.Targets {
			queries[fmt.Sprintf("dashboard panel %q %s", p.Title, tg.RefID)] = grafanaVars.Replace(tg.Expr)
		}
	}
	alerts := map[string]bool{}
	for _, g := range rule.Spec.Groups {
		for _, a := range g.Rules {
			queries["alert "+a.Alert] = a.Expr
			alerts[a.Alert] = true
			if a.Labels["severity"] == "" || a.Annotations["summary"] == "" || a.Annotations["description"] == "" || a.For == "" {
				t.Errorf("alert %s lacks a severity, summary, description or for", a.Alert)
			}
		}
	}

	pp := parser.NewParser(parser.Options{})
	used := map[string][]string{} // metric -> where
	for where, q := range queries {
		expr, err := pp.ParseExpr(q)
		if err != nil {
			t.Errorf("%s does not parse: %v\n%s", where, err, q)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			used[vs.Name] = append(used[vs.Name], where)
			if strings.HasPrefix(where, "alert ") && !selectsRelease(vs, metricsService) {
				t.Errorf("%s: %s does not select namespace %q and job %q", where, vs, namespace, metricsService)
			}
			return nil
		})
	}
	for _, v := range dashboard.Templating.List {
		if m := regexp.MustCompile(`label_values\(([a-z_]+)`).FindStringSubmatch(v.Query.Query); m != nil {
			used[m[1]] = append(used[m[1]], "dashboard variable "+v.Name)
		}
	}

	exported := scrapeSidecarMetrics(t)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range used {
			if !yield(n) {
				return
			}
		}
	}) {
		if !exported[name] {
			t.Errorf("%v use %s, which the sidecar does not export", used[name], name)
		}
	}

	// What the operator looks at, on the dashboard and in alerts.
	for _, m := range []string{
		"negotiate_sidecar_negotiate_requests_total", "negotiate_sidecar_jwt_authn_denied_total",
		"negotiate_sidecar_upstream_duration_seconds_bucket", "negotiate_sidecar_jwks_age_seconds",
		"negotiate_sidecar_jwks_fetch_failed_total", "negotiate_sidecar_token_cache_hits_total",
		"negotiate_sidecar_entra_key_age_seconds", "negotiate_sidecar_entra_key_fetches_total",
	} {
		if !slices.ContainsFunc(used[m], func(w string) bool { return strings.HasPrefix(w, "dashboard panel") }) {
			t.Errorf("no dashboard panel shows %s", m)
		}
	}
	for _, a := range []string{"NegotiateSidecarNoKeys", "NegotiateSidecarKeysStale", "NegotiateSidecarKeyFetchFailing", "NegotiateSidecarEntraKeyStale",
		"NegotiateSidecarRewriteFailures", "NegotiateSidecarUpstreamErrors", "NegotiateSidecarDenialSpike"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
}

// grafanaDashboard is the part of a Grafana dashboard the test reads.
type grafanaDashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query struct {
				Query string `json:"query"`
			} `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// UnmarshalJSON reads a variable's query whether it is a string (datasource variables) or an object.
func (d *grafanaDashboard) UnmarshalJSON(b []byte) error {
	type plain grafanaDashboard
	var raw struct {
		plain
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*d = grafanaDashboard(raw.plain)
	d.Templating.List = nil
	for _, v := range raw.Templating.List {
		entry := struct {
			Name  string `json:"name"`
			Query struct {
				Query string `json:"query"`
			} `json:"query"`
		}{Name: v.Name}
		_ = json.Unmarshal(v.Query, &entry.Query) // a plain string leaves it empty
		d.Templating.List = append(d.Templating.List, entry)
	}
	return nil
}

// monitoringObjects returns the rendered dashboard, decoded, and the PrometheusRule.
func monitoringObjects(t *testing.T, o objects) (grafanaDashboard, *prometheusRule) {
	t.Helper()
	var dash *grafanaDashboard
	for _, c := range o.configMaps {
		data, ok := c.Data[dashboardFile]
		if !ok {
			continue
		}
		if c.Labels["grafana_dashboard"] != "1" {
			t.Errorf("the dashboard ConfigMap lacks the grafana_dashboard label: %v", c.Labels)
		}
		dash = &grafanaDashboard{}
		if err := json.Unmarshal([]byte(data), dash); err != nil {
			t.Fatalf("the dashboard is not JSON: %v", err)
		}
	}
	if dash == nil || len(dash.Panels) == 0 {
		t.Fatal("no dashboard rendered")
	}
	if len(o.prometheusRules) != 1 {
		t.Fatalf("%d PrometheusRules rendered, want 1", len(o.prometheusRules))
	}
	return *dash, o.prometheusRules[0]
}

// selectsRelease reports whether a selector matches exactly the release's namespace and metrics job.
func selectsRelease(vs *parser.VectorSelector, job string) bool {
	var ns, jb bool
	for _, m := range vs.LabelMatchers {
		ns = ns || (m.Name == "namespace" && m.Type.String() == "=" && m.Value == namespace)
		jb = jb || (m.Name == "job" && m.Type.String() == "=" && m.Value == job)
	}
	return ns && jb
}

// scrapeSidecarMetrics runs the real sidecar against a stand-in identity provider (whose first answer is an
// error) and app, makes it refuse a token, rewrite a negotiate and serve a token from its cache, then
// returns the names of the series /metrics shows, histogram and summary parts included.
func scrapeSidecarMetrics(t *testing.T) map[string]bool {
	t.Helper()
	bin := buildSidecar(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	coord := func(i *big.Int) string { return b64(i.FillBytes(make([]byte, 32))) }
	var fetches atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) == 1 {
			http.Error(w, "starting", http.StatusServiceUnavailable) // a failed fetch, for its counter
			return
		}
		fmt.Fprintf(w, `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","alg":"ES256","x":%q,"y":%q}]}`, coord(key.X), coord(key.Y))
	}))
	defer idp.Close()

	const accessKey = "bW9uaXRvcmluZy10ZXN0LWFjY2Vzcy1rZXk="
	const aud = "https://monitoring.service.signalr.net/client/?hub=chat"
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().Unix()
		unsigned := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64(fmt.Appendf(nil, `{"nbf":%d,"exp":%d,"iat":%d,"aud":%q}`, now, now+3600, now, aud))
		mac := hmac.New(sha256.New, []byte(accessKey))
		mac.Write([]byte(unsigned))
		fmt.Fprintf(w, `{"url":%q,"accessToken":"%s.%s"}`, aud, unsigned, b64(mac.Sum(nil)))
	}))
	defer app.Close()

	// A second endpoint, reached with Microsoft Entra ID, so that its key
	// metrics are exported: an App Service style identity endpoint and the
	// service's key API, as the sidecar calls them.
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/identity" {
			fmt.Fprintf(w, `{"access_token":"t","expires_on":"%d","resource":"https://signalr.azure.com","token_type":"Bearer"}`, time.Now().Add(time.Hour).Unix())
			return
		}
		fmt.Fprint(w, `{"KeyId":"k","AccessKey":"bW9uaXRvcmluZy1lbnRyYS1rZXk="}`)
	}))
	defer entra.Close()

	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", app.URL,
		"--issuer", "https://idp.monitoring.test/", "--audience", "api://monitoring", "--jwks-url", idp.URL+"/keys",
		"--shutdown-delay", "0s")
	cmd.Env = []string{"AzureSignalRConnectionString=Endpoint=https://monitoring.service.signalr.net;AccessKey=" + accessKey + ";Version=1.0;",
		"Azure__SignalR__Endpoints__entra=Endpoint=" + entra.URL + ";AuthType=azure.msi;Version=1.0;",
		"IDENTITY_ENDPOINT=" + entra.URL + "/identity", "IDENTITY_HEADER=h"}
	proxyURL, adminURL := startAndListen(t, cmd)

	waitFor(t, adminURL+"/readyz", 200)
	header := fmt.Sprintf(`{"alg":"ES256","typ":"JWT","kid":"k1"}`)
	payload := fmt.Sprintf(`{"iss":"https://idp.monitoring.test/","aud":"api://monitoring","sub":"user-1","exp":%d}`, time.Now().Add(time.Hour).Unix())
	unsigned := b64([]byte(header)) + "." + b64([]byte(payload))
	digest := sha256.Sum256([]byte(unsigned))
	rs, ss, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	token := unsigned + "." + b64(append(rs.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...))
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {token, 200}, {token, 200}} {
		req, _ := http.NewRequest("POST", proxyURL+"/api/negotiate", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("negotiate: %d %s, want %d", resp.StatusCode, body, tc.want)
		}
	}

	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		switch f[3] {
		case "histogram":
			names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
		case "summary":
			names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
		}
	}
	return names
}

// startAndListen starts the sidecar and returns its proxy and admin URLs, read from its "listening" log
// lines. The process is stopped when the test ends.
func startAndListen(t *testing.T, cmd *exec.Cmd) (proxyURL, adminURL string) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	addrs := make(chan [2]string, 1)
	go func() {
		var a [2]string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Listener, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "listening" {
				continue
			}
			if line.Listener == "proxy" {
				a[0] = "http://" + line.Addr
			} else {
				a[1] = "http://" + line.Addr
			}
			if a[0] != "" && a[1] != "" {
				addrs <- a
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addrs:
		return a[0], a[1]
	case <-time.After(30 * time.Second):
		t.Fatal("the sidecar did not start listening")
	}
	return "", ""
}

// waitFor polls url until it answers with the status; background work, not a timing.
func waitFor(t *testing.T, url string, status int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d", url, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
