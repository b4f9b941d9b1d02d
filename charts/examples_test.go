package charts

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// existingDir is the example that adds the sidecar to a Deployment the chart does not manage.
var existingDir = filepath.Join("examples", "existing-deployment")

// TestExistingDeploymentExample applies the example's patches to its stand-in for a `func kubernetes
// deploy` app as `kubectl patch` and kustomize do (strategic merge patches), decodes the result strictly and
// checks that the sidecar is added as the chart would add it: it reads the Secret the app reads, the Service
// sends traffic to it, and the NetworkPolicy admits only its ports.
func TestExistingDeploymentExample(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Patches    []struct {
			Path string `json:"path"`
		} `json:"patches"`
	}
	if err := yaml.UnmarshalStrict([]byte(readFile(t, filepath.Join(existingDir, "kustomization.yaml"))), &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}

	// The resources, as JSON by kind and name.
	objs := map[string][]byte{}
	var order []string
	for _, r := range k.Resources {
		for _, doc := range yamlDocuments(t, filepath.Join(existingDir, r)) {
			id, j := objectID(t, doc)
			if _, dup := objs[id]; dup {
				t.Fatalf("%s: %s given twice", r, id)
			}
			objs[id] = j
			order = append(order, id)
		}
	}
	for _, p := range k.Patches {
		docs := yamlDocuments(t, filepath.Join(existingDir, p.Path))
		if len(docs) != 1 {
			t.Fatalf("%s: %d documents, want 1", p.Path, len(docs))
		}
		id, patch := objectID(t, docs[0])
		target, ok := objs[id]
		if !ok {
			t.Fatalf("%s patches %s, which is not among the resources", p.Path, id)
		}
		var schema any
		switch {
		case strings.HasPrefix(id, "Deployment/"):
			schema = appsv1.Deployment{}
		case strings.HasPrefix(id, "Service/"):
			schema = corev1.Service{}
		default:
			t.Fatalf("%s: no patch schema for %s", p.Path, id)
		}
		merged, err := strategicpatch.StrategicMergePatch(target, patch, schema)
		if err != nil {
			t.Fatalf("%s: %v", p.Path, err)
		}
		objs[id] = merged
	}

	var d appsv1.Deployment
	var svc corev1.Service
	var secret corev1.Secret
	var np networkingv1.NetworkPolicy
	for _, id := range order {
		var target any
		switch id {
		case "Deployment/chat-http":
			target = &d
		case "Service/chat-http":
			target = &svc
		case "Secret/chat":
			target = &secret
		case "NetworkPolicy/chat-http":
			target = &np
		default:
			t.Fatalf("unexpected resource %s", id)
		}
		if err := yaml.UnmarshalStrict(objs[id], target); err != nil {
			t.Fatalf("%s after the patches: %v", id, err)
		}
	}

	pod := d.Spec.Template
	checkPodSpec(t, pod.Spec)
	if len(pod.Spec.Containers) != 2 {
		t.Fatalf("%d containers after the patch, want the app and the sidecar", len(pod.Spec.Containers))
	}
	app, sidecar := findContainer(t, pod.Spec.Containers, "chat-http"), findContainer(t, pod.Spec.Containers, "negotiate-sidecar")
	if got := pod.Annotations["kubectl.kubernetes.io/default-container"]; got != app.Name {
		t.Errorf("default container %q, want the app's", got)
	}
	// The example's settings, in the chart's terms.
	v := chartutil.Values{
		"functions": map[string]any{"port": 80},
		"sidecar":   map[string]any{"port": 8080, "adminPort": 9090},
		"auth": map[string]any{
			"issuer":    "https://login.microsoftonline.com/<tenant-id>/v2.0",
			"audiences": []any{"api://<your-api-client-id>"},
		},
	}
	checkSidecar(t, pod.Spec, sidecar, v)
	if len(app.Ports) != 1 || app.Ports[0].ContainerPort != 80 {
		t.Errorf("app ports %+v changed", app.Ports)
	}

	// The app reads every key of the Secret; the sidecar reads the connection string from the same one.
	ref := findEnv(sidecar, "AzureSignalRConnectionString")
	if ref == nil || ref.ValueFrom == nil || ref.ValueFrom.SecretKeyRef == nil {
		t.Fatal("the sidecar does not read AzureSignalRConnectionString from a Secret")
	}
	if len(app.EnvFrom) != 1 || app.EnvFrom[0].SecretRef == nil || app.EnvFrom[0].SecretRef.Name != ref.ValueFrom.SecretKeyRef.Name {
		t.Errorf("the app reads %+v, the sidecar Secret %s", app.EnvFrom, ref.ValueFrom.SecretKeyRef.Name)
	}
	cs := string(secret.Data[ref.ValueFrom.SecretKeyRef.Key])
	if secret.Name != ref.ValueFrom.SecretKeyRef.Name || !strings.HasPrefix(cs, "Endpoint=https://") || !strings.Contains(cs, "not-a-real-key") {
		t.Errorf("Secret %s key %s holds %q, want the example's fake connection string", secret.Name, ref.ValueFrom.SecretKeyRef.Key, cs)
	}

	checkServiceSelects(t, &svc, pod)
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service ports %+v", svc.Spec.Ports)
	}
	if c, p := resolvePort(t, pod.Spec, svc.Spec.Ports[0].TargetPort); c != sidecar.Name || p.Name != "http" {
		t.Errorf("Service targets %s port %q, want the sidecar's http port", c, p.Name)
	}

	sel := metav1.LabelSelector{MatchLabels: np.Spec.PodSelector.MatchLabels}
	if s, err := metav1.LabelSelectorAsSelector(&sel); err != nil || len(sel.MatchLabels) == 0 || !s.Matches(labels.Set(pod.Labels)) {
		t.Errorf("NetworkPolicy selector %v does not select the pods", np.Spec.PodSelector)
	}
	admitted := map[int32]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			admitted[p.Port.IntVal] = true
		}
		if len(rule.Ports) == 0 {
			t.Error("NetworkPolicy has a rule for every port")
		}
	}
	if len(admitted) != 2 || !admitted[8080] || !admitted[9090] || len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != "Ingress" {
		t.Errorf("NetworkPolicy admits %v (%v), want ingress to 8080 and 9090 only", admitted, np.Spec.PolicyTypes)
	}
}

// yamlDocuments returns the non-empty YAML documents of a file.
func yamlDocuments(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs [][]byte
	r := k8syaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

// objectID returns "Kind/name" of a YAML object and the object as JSON.
func objectID(t *testing.T, doc []byte) (string, []byte) {
	t.Helper()
	var o struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &o); err != nil || o.Kind == "" || o.Metadata.Name == "" {
		t.Fatalf("not a named Kubernetes object (%v):\n%s", err, doc)
	}
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	return o.Kind + "/" + o.Metadata.Name, j
}

// TestReadmesShowExamples checks that the documentation shows the example files as they are, so that what a
// user copies from it is what these tests check, and that its relative links lead to files that exist.
func TestReadmesShowExamples(t *testing.T) {
	chartReadme := readFile(t, filepath.Join(chartDir, "README.md"))
	for _, f := range []string{
		filepath.Join(existingDir, "sidecar-patch.yaml"),
		filepath.Join(existingDir, "service-patch.yaml"),
		filepath.Join("examples", "parent-chart", "templates", "deployment.yaml"),
	} {
		if !strings.Contains(chartReadme, "\n"+readFile(t, f)+"```\n") {
			t.Errorf("%s/README.md does not show %s as it is, in a code block of its own", chartDir, f)
		}
	}
	link := regexp.MustCompile(`\]\(([^)#:]+)(#[^)]*)?\)`)
	for _, readme := range []string{filepath.Join(chartDir, "README.md"), filepath.Join(repoRoot, "README.md")} {
		for _, m := range link.FindAllStringSubmatch(readFile(t, readme), -1) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(readme), m[1])); err != nil {
				t.Errorf("%s links to %s: %v", readme, m[1], err)
			}
		}
	}
}

// TestChartReadmeValuesExamples renders each values example of the chart's README (a YAML block whose keys
// are all values of the chart) over the full scenario, so that what the README suggests is accepted by the
// schema and renders.
func TestChartReadmeValuesExamples(t *testing.T) {
	defaults := readValues(t, filepath.Join(chartDir, "values.yaml"))
	base := readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml"))
	block := regexp.MustCompile("(?s)\n( *)```yaml\n(.*?)\n *```")
	tested := 0
	for _, m := range block.FindAllStringSubmatch(readFile(t, filepath.Join(chartDir, "README.md")), -1) {
		if strings.Contains(m[2], "{{") {
			continue // a template
		}
		var lines []string
		for _, l := range strings.Split(m[2], "\n") {
			lines = append(lines, strings.TrimPrefix(l, m[1]))
		}
		example, err := chartutil.ReadValues([]byte(strings.Join(lines, "\n")))
		if err != nil {
			t.Errorf("README example does not parse: %v\n%s", err, m[2])
			continue
		}
		ours := len(example) > 0
		for k := range example {
			if _, ok := defaults[k]; !ok {
				ours = false
			}
		}
		if !ours {
			continue // a Kubernetes object, a Chart.yaml or another chart's values
		}
		tested++
		r, err := render(loadChart(t, chartDir), overlay(copyValues(t, base), example.AsMap()), kubeVersion)
		if err != nil {
			t.Errorf("README example does not render: %v\n%s", err, m[2])
			continue
		}
		decode(t, r.manifests)
	}
	if tested < 2 {
		t.Errorf("%d values examples found in the README, want at least 2", tested)
	}
}

// workloadIdentityDir is the example of the chart's workload connected with AKS workload identity.
var workloadIdentityDir = filepath.Join("examples", "workload-identity")

// TestWorkloadIdentityExample renders the chart with the example's values as its README installs them, and
// checks what the setup relies on: the webhook's label and annotation, the identity-based settings in both
// containers, no Secret, the NetworkPolicy, and a README whose federated credential names the ServiceAccount
// the chart creates.
func TestWorkloadIdentityExample(t *testing.T) {
	const clientID = "22222222-2222-2222-2222-222222222222"
	values := readValues(t, filepath.Join(workloadIdentityDir, "values.yaml"))
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range lint.AllWithKubeVersion(chartDir, values, namespace, kv).Messages {
		if m.Severity != support.InfoSev || !strings.Contains(m.Err.Error(), "icon is recommended") {
			t.Errorf("lint: %s", m.Error())
		}
	}
	// As the README's helm command sets it.
	values = overlay(values, map[string]any{"azureWorkloadIdentity": map[string]any{"clientId": clientID}})
	r := mustRender(t, chartDir, values)
	o := decode(t, r.manifests)
	v := r.chartValues(t, "")
	want := map[string]int{"Deployment": 1, "Service": 1, "ServiceAccount": 1, "NetworkPolicy": 1}
	if !maps.Equal(o.kinds, want) {
		t.Errorf("rendered kinds %v, want %v", o.kinds, want)
	}
	checkWorkload(t, o, v) // the label, the annotations and the same connection in both containers

	pod := o.deployments[0].Spec.Template
	sa := o.serviceAccounts[0]
	if pod.Labels[workloadIdentityLabel] != "true" || sa.Annotations[workloadIdentityClientID] != clientID {
		t.Errorf("pod labels %v, ServiceAccount annotations %v: the webhook would not give the pods the identity", pod.Labels, sa.Annotations)
	}
	if skip := pod.Annotations["azure.workload.identity/skip-containers"]; skip != "" {
		t.Errorf("the webhook skips containers %q, but both sign in", skip)
	}
	serviceURI := ""
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		name := "AzureSignalRConnectionString"
		if cred := findEnv(&c, name+"__credential"); cred == nil || cred.Value != "workloadidentity" {
			t.Errorf("container %s has %s__credential %+v, want workloadidentity", c.Name, name, cred)
		}
		if uri := findEnv(&c, name+"__serviceUri"); uri != nil {
			serviceURI = uri.Value
		}
	}
	if len(o.networkPolicies) != 1 {
		t.Error("no NetworkPolicy: the sidecar trusts the app in its pod, so nothing else may reach the app")
	}

	readme := readFile(t, filepath.Join(workloadIdentityDir, "README.md"))
	for _, want := range []string{
		"SERVICE_ACCOUNT=" + sa.Name + "\n",
		"SIGNALR=" + strings.TrimSuffix(strings.TrimPrefix(serviceURI, "https://"), ".service.signalr.net") + "\n",
		`--subject "system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}" --audiences api://AzureADTokenExchange`,
		`--role "SignalR App Server"`,
		"helm install chat ./charts/negotiate-sidecar --namespace \"$NAMESPACE\" \\\n  -f " +
			filepath.ToSlash(filepath.Join("charts", workloadIdentityDir, "values.yaml")) +
			` --set azureWorkloadIdentity.clientId="$CLIENT_ID"`,
		"up to 30 minutes",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("%s/README.md lacks %q", workloadIdentityDir, want)
		}
	}
}
