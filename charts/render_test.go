package charts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test.
const chartDir = "negotiate-sidecar"

// kubeVersion is the cluster version the scenarios are rendered for: one that has native sidecars.
const kubeVersion = "v1.33.0"

// releaseName and namespace are those of the scenarios' release.
const (
	releaseName = "chat"
	namespace   = "apps"
)

// loadChart loads the chart from its directory, as helm install does.
func loadChart(t *testing.T, dir string) *chart.Chart {
	t.Helper()
	c, err := loader.Load(dir)
	if err != nil {
		t.Fatalf("loading chart %s: %v", dir, err)
	}
	return c
}

// readValues reads a values file, such as one of ci/*-values.yaml.
func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return v.AsMap()
}

// renderResult is a rendered release: its manifests by template name and the values they were rendered
// with, the chart's defaults merged with the user's.
type renderResult struct {
	manifests map[string]string
	values    chartutil.Values
}

// render renders c with the user's values for a cluster of the given version, as helm install would: the
// dependencies are enabled or disabled, the values are coalesced with the defaults and checked against each
// chart's values.schema.json, and the templates are executed.
func render(c *chart.Chart, userValues map[string]any, kube string) (renderResult, error) {
	if userValues == nil {
		userValues = map[string]any{}
	}
	if err := chartutil.ProcessDependenciesWithMerge(c, userValues); err != nil {
		return renderResult{}, fmt.Errorf("processing dependencies: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(kube)
	if err != nil {
		return renderResult{}, err
	}
	caps.KubeVersion = *kv
	vals, err := chartutil.ToRenderValues(c, userValues, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return renderResult{}, err
	}
	out, err := engine.Render(c, vals)
	if err != nil {
		return renderResult{}, err
	}
	return renderResult{manifests: out, values: vals}, nil
}

// mustRender renders the chart in dir with the user's values and fails the test on any error.
func mustRender(t *testing.T, dir string, userValues map[string]any) renderResult {
	t.Helper()
	r, err := render(loadChart(t, dir), userValues, kubeVersion)
	if err != nil {
		t.Fatalf("rendering %s: %v", dir, err)
	}
	return r
}

// chartValues returns the values the chart's own templates saw: the top-level values for the chart
// itself, or those under its name for a dependency.
func (r renderResult) chartValues(t *testing.T, key string) chartutil.Values {
	t.Helper()
	v, err := r.values.Table("Values")
	if err != nil {
		t.Fatalf("no values: %v", err)
	}
	if key == "" {
		return v
	}
	sub, err := v.Table(key)
	if err != nil {
		t.Fatalf("no values for %s: %v", key, err)
	}
	return sub
}

// objects holds every object of a rendered release, decoded strictly into its Kubernetes API type.
type objects struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	secrets         []*corev1.Secret
	configMaps      []*corev1.ConfigMap
	serviceAccounts []*corev1.ServiceAccount
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	serviceMonitors []*serviceMonitor
	prometheusRules []*prometheusRule
	// kinds counts the objects by kind.
	kinds map[string]int
	// notes is the rendered NOTES.txt of the top chart.
	notes string
}

// serviceMonitor is the part of the Prometheus Operator's monitoring.coreos.com/v1 ServiceMonitor that the
// chart uses. Strict decoding into it fails on any other field, so a field the chart renders must be added
// here deliberately, after checking its spelling against the CRD.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the part of the Prometheus Operator's monitoring.coreos.com/v1 PrometheusRule that the
// chart uses; strict decoding fails on any other field, as for serviceMonitor.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// decode splits every rendered manifest into its YAML documents and decodes each strictly into the type of
// its apiVersion and kind: a field the type does not have, a field given twice or a value of the wrong type
// fails the test, as does an object of a kind the chart is not expected to render.
func decode(t *testing.T, manifests map[string]string) objects {
	t.Helper()
	o := objects{kinds: map[string]int{}}
	for _, name := range slices.Sorted(maps.Keys(manifests)) {
		content := manifests[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			if strings.Count(name, "/templates/") == 1 && strings.Count(name, "/charts/") == 0 {
				o.notes = content
			}
			continue
		}
		if !strings.HasSuffix(name, ".yaml") {
			t.Errorf("%s: unexpected template file (not .yaml): %q", name, content)
			continue
		}
		reader := k8syaml.NewYAMLReader(bufio.NewReader(strings.NewReader(content)))
		for i := 0; ; i++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: splitting documents: %v", name, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			where := fmt.Sprintf("%s (document %d)", name, i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v\n%s", where, err, doc)
			}
			var target any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				o.deployments, target = append(o.deployments, d), d
			case "v1 Service":
				s := &corev1.Service{}
				o.services, target = append(o.services, s), s
			case "v1 Secret":
				s := &corev1.Secret{}
				o.secrets, target = append(o.secrets, s), s
			case "v1 ConfigMap":
				c := &corev1.ConfigMap{}
				o.configMaps, target = append(o.configMaps, c), c
			case "v1 ServiceAccount":
				s := &corev1.ServiceAccount{}
				o.serviceAccounts, target = append(o.serviceAccounts, s), s
			case "autoscaling/v2 HorizontalPodAutoscaler":
				h := &autoscalingv2.HorizontalPodAutoscaler{}
				o.hpas, target = append(o.hpas, h), h
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				o.pdbs, target = append(o.pdbs, p), p
			case "networking.k8s.io/v1 NetworkPolicy":
				n := &networkingv1.NetworkPolicy{}
				o.networkPolicies, target = append(o.networkPolicies, n), n
			case "monitoring.coreos.com/v1 ServiceMonitor":
				s := &serviceMonitor{}
				o.serviceMonitors, target = append(o.serviceMonitors, s), s
			case "monitoring.coreos.com/v1 PrometheusRule":
				r := &prometheusRule{}
				o.prometheusRules, target = append(o.prometheusRules, r), r
			default:
				t.Fatalf("%s: unexpected object %s %s", where, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, target); err != nil {
				t.Fatalf("%s: strict decoding of %s: %v\n%s", where, tm.Kind, err, doc)
			}
			o.kinds[tm.Kind]++
		}
	}
	return o
}

// stripComments drops the comment lines of a YAML document, so that a document holding only the
// "# Source:" comment Helm adds counts as empty.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out.Write(line)
		}
	}
	return out.Bytes()
}

// ciValuesFiles lists the chart's scenario files, ci/*-values.yaml.
func ciValuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files in %s/ci: %v", chartDir, err)
	}
	return files
}

// scenarioName is the name of a scenario file without directory and suffix: "full" for full-values.yaml.
func scenarioName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), "-values.yaml")
}

// readFile reads a file of the test tree.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
