package charts

import (
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// TestMain silences the Helm SDK's standard logger, which reports each value the linter finds missing.
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// TestChartLint lints the chart as `helm lint --strict` does, with its default values and with each scenario
// file: no warning and no error, and no information beyond the missing icon.
func TestChartLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]map[string]any{"defaults": nil}
	for _, f := range ciValuesFiles(t) {
		cases[scenarioName(f)] = readValues(t, f)
	}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) {
			linter := lint.AllWithKubeVersion(chartDir, cases[name], namespace, kv)
			for _, m := range linter.Messages {
				if m.Severity == support.InfoSev && strings.Contains(m.Err.Error(), "icon is recommended") {
					continue
				}
				t.Errorf("lint: %s", m.Error())
			}
		})
	}
}

// scenarioKinds is what each scenario file must render, by kind. A new scenario file needs an entry here.
var scenarioKinds = map[string]map[string]int{
	"full":            {"Deployment": 1, "Service": 1, "ServiceAccount": 1, "Secret": 1},
	"include-only":    {"Secret": 1, "ConfigMap": 1},
	"native-sidecar":  {"Deployment": 1, "Service": 1, "ServiceAccount": 1},
	"existing-secret": {"Deployment": 1, "Service": 1, "ServiceAccount": 1},
	"webpubsub":       {"Deployment": 1, "Service": 1, "ServiceAccount": 1},
	"extras": {
		"Deployment": 1, "Service": 2, "ServiceAccount": 1, "Secret": 1, "ConfigMap": 2,
		"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1, "NetworkPolicy": 1, "ServiceMonitor": 1,
		"PrometheusRule": 1,
	},
}

// TestChartScenarios renders the chart for each ci/*-values.yaml file, decodes every object strictly into
// its Kubernetes API type and checks what a user relies on: the Service reaches only the sidecar, the probes
// hit the admin endpoints, the secure defaults hold, and both containers read the one Secret.
func TestChartScenarios(t *testing.T) {
	files := ciValuesFiles(t)
	seen := map[string]bool{}
	for _, f := range files {
		name := scenarioName(f)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := scenarioKinds[name]
			if !ok {
				t.Fatalf("%s has no entry in scenarioKinds", f)
			}
			r := mustRender(t, chartDir, readValues(t, f))
			o := decode(t, r.manifests)
			if !maps.Equal(o.kinds, want) {
				t.Errorf("rendered kinds %v, want %v", o.kinds, want)
			}
			v := r.chartValues(t, "")
			checkObjectNames(t, o)
			checkSecret(t, o, v)
			checkConfigMap(t, o, v)
			if len(o.deployments) == 1 {
				checkWorkload(t, o, v)
			}
			checkNotes(t, o, v)
		})
	}
	for name := range scenarioKinds {
		if !seen[name] {
			t.Errorf("scenarioKinds names %q, but there is no ci/%s-values.yaml", name, name)
		}
	}
}

// checkNotes checks that NOTES.txt tells the user how to check the release: the rollout, readiness, the
// sidecar's own check of a token with the pod's exact arguments, and a negotiate whose token shows the
// verified user id.
func checkNotes(t *testing.T, o objects, v chartutil.Values) {
	if !boolean(t, v, "workload.enabled") {
		for _, want := range []string{`include "negotiate-sidecar.container"`, `include "negotiate-sidecar.volumes"`, "negotiate-sidecar.connectionStringEnv"} {
			if !strings.Contains(o.notes, want) {
				t.Errorf("NOTES.txt does not show %s:\n%s", want, o.notes)
			}
		}
		return
	}
	d := o.deployments[0]
	sidecar, _ := findSidecar(t, d.Spec.Template.Spec, str(t, v, "sidecar.name"))
	var check strings.Builder
	check.WriteString("/negotiate-sidecar check \\\n    ")
	for _, a := range sidecar.Args {
		check.WriteString("'" + a + "' ")
	}
	check.WriteString(`--token "$TOKEN"`)
	for _, want := range []string{
		"rollout status deployment/" + d.Name,
		fmt.Sprintf("port-forward deployment/%s 9090:%d", d.Name, integer(t, v, "sidecar.adminPort")),
		"curl -i http://127.0.0.1:9090/readyz",
		"exec deployment/" + d.Name + " --container " + sidecar.Name + " -- " + check.String(),
		"Authorization: Bearer $TOKEN",
		"asrs.s.uid",
	} {
		if !strings.Contains(o.notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, o.notes)
		}
	}
}

// checkWorkload checks the Deployment and everything that points at its pods.
func checkWorkload(t *testing.T, o objects, v chartutil.Values) {
	d := o.deployments[0]
	pod := d.Spec.Template
	checkPodSpec(t, pod.Spec)

	sel, err := metaSelector(d.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", d.Spec.Selector.MatchLabels, pod.Labels)
	}

	sidecar, native := findSidecar(t, pod.Spec, str(t, v, "sidecar.name"))
	if native != boolean(t, v, "nativeSidecar") {
		t.Errorf("sidecar is an init container: %v, want %v (nativeSidecar)", native, boolean(t, v, "nativeSidecar"))
	}
	if native && (sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
		t.Errorf("native sidecar restartPolicy %v, want Always", sidecar.RestartPolicy)
	}
	if !native && sidecar.RestartPolicy != nil {
		t.Errorf("sidecar in containers has restartPolicy %v", *sidecar.RestartPolicy)
	}
	app := findContainer(t, pod.Spec.Containers, str(t, v, "functions.name"))
	checkSidecar(t, pod.Spec, sidecar, v)
	checkSharedConnection(t, sidecar, app, v)
	checkShutdown(t, pod.Spec, sidecar, app, v)
	if psc := pod.Spec.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccomp profile is not RuntimeDefault: %+v", psc)
	}

	functionsPort := integer(t, v, "functions.port")
	for _, p := range app.Ports {
		if p.ContainerPort != int32(functionsPort) {
			t.Errorf("Functions container declares port %d, want only %d", p.ContainerPort, functionsPort)
		}
	}

	autoscaled := boolean(t, v, "autoscaling.enabled")
	if autoscaled != (d.Spec.Replicas == nil) {
		t.Errorf("Deployment replicas %v with autoscaling %v", d.Spec.Replicas, autoscaled)
	}

	// The Service clients reach: every port sends traffic to the sidecar's proxy port, none to the app.
	var main []*corev1.Service
	for _, s := range o.services {
		if s.Labels["app.kubernetes.io/component"] != "metrics" {
			main = append(main, s)
		}
	}
	if len(main) != 1 {
		t.Fatalf("%d client Services, want 1", len(main))
	}
	svc := main[0]
	checkServiceSelects(t, svc, pod)
	if len(svc.Spec.Ports) != 1 {
		t.Errorf("Service has %d ports, want only the proxy port", len(svc.Spec.Ports))
	}
	for _, p := range svc.Spec.Ports {
		c, port := resolvePort(t, pod.Spec, p.TargetPort)
		if c != sidecar.Name || port.Name != "http" || port.ContainerPort != int32(integer(t, v, "sidecar.port")) {
			t.Errorf("Service port %d targets %s port %s (%d), want the sidecar's http port %d",
				p.Port, c, port.Name, port.ContainerPort, integer(t, v, "sidecar.port"))
		}
		if p.Port != int32(integer(t, v, "service.port")) {
			t.Errorf("Service port %d, want %d", p.Port, integer(t, v, "service.port"))
		}
	}
	if svc.Spec.Type != corev1.ServiceType(str(t, v, "service.type")) {
		t.Errorf("Service type %s, want %s", svc.Spec.Type, str(t, v, "service.type"))
	}

	if sa := str(t, v, "serviceAccount.name"); sa != "" && pod.Spec.ServiceAccountName != sa {
		t.Errorf("serviceAccountName %q, want %q", pod.Spec.ServiceAccountName, sa)
	}
	if len(o.serviceAccounts) == 1 && o.serviceAccounts[0].Name != pod.Spec.ServiceAccountName {
		t.Errorf("ServiceAccount %q, pods use %q", o.serviceAccounts[0].Name, pod.Spec.ServiceAccountName)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken != boolean(t, v, "serviceAccount.automountServiceAccountToken") {
		t.Errorf("automountServiceAccountToken %v", pod.Spec.AutomountServiceAccountToken)
	}

	checkWorkloadIdentity(t, o, v)
	checkExtras(t, o, d, sidecar, v)
}

// checkSidecar checks the sidecar container: ports, arguments, probes and security context.
func checkSidecar(t *testing.T, pod corev1.PodSpec, c *corev1.Container, v chartutil.Values) {
	port, admin := int32(integer(t, v, "sidecar.port")), int32(integer(t, v, "sidecar.adminPort"))
	wantPorts := map[string]int32{"http": port, "admin": admin}
	gotPorts := map[string]int32{}
	for _, p := range c.Ports {
		gotPorts[p.Name] = p.ContainerPort
	}
	if !maps.Equal(gotPorts, wantPorts) {
		t.Errorf("sidecar ports %v, want %v", gotPorts, wantPorts)
	}
	if len(c.Command) != 0 {
		t.Errorf("sidecar command %q replaces the image's entrypoint", c.Command)
	}
	args := c.Args
	for _, want := range []string{
		fmt.Sprintf("--listen=:%d", port),
		fmt.Sprintf("--admin-listen=:%d", admin),
		fmt.Sprintf("--upstream=http://127.0.0.1:%d", integer(t, v, "functions.port")),
	} {
		if !slices.Contains(args, want) {
			t.Errorf("sidecar args %q lack %s", args, want)
		}
	}
	if issuer := str(t, v, "auth.issuer"); issuer != "" && !slices.Contains(args, "--issuer="+issuer) {
		t.Errorf("sidecar args %q lack --issuer=%s", args, issuer)
	}
	if insecure := boolean(t, v, "auth.insecureHttp"); insecure != slices.Contains(args, "--insecure-http") {
		t.Errorf("sidecar args %q with auth.insecureHttp %v", args, insecure)
	}
	for _, a := range stringList(t, v, "auth.audiences") {
		if !slices.Contains(args, "--audience="+a) {
			t.Errorf("sidecar args %q lack --audience=%s", args, a)
		}
	}
	for _, p := range stringList(t, v, "sidecar.negotiatePaths") {
		if !slices.Contains(args, "--negotiate-path="+p) {
			t.Errorf("sidecar args %q lack --negotiate-path=%s", args, p)
		}
	}
	extra := stringList(t, v, "sidecar.extraArgs")
	if len(extra) > 0 && !slices.Equal(args[len(args)-len(extra):], extra) {
		t.Errorf("sidecar args %q do not end with extraArgs %q", args, extra)
	}

	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
		{"startup", c.StartupProbe, "/healthz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("sidecar has no HTTP %s probe", p.name)
			continue
		}
		g := p.probe.HTTPGet
		cn, cp := resolvePort(t, pod, g.Port)
		if g.Path != p.path || cn != c.Name || cp.Name != "admin" || cp.ContainerPort != admin {
			t.Errorf("sidecar %s probe GET %s on %s port %s (%d), want GET %s on the admin port %d",
				p.name, g.Path, cn, cp.Name, cp.ContainerPort, p.path, admin)
		}
	}

	// The effective security context: the container's, else the pod's.
	sc, psc := c.SecurityContext, pod.SecurityContext
	if sc == nil {
		t.Fatal("sidecar has no securityContext")
	}
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	runAsNonRoot := sc.RunAsNonRoot
	if runAsNonRoot == nil {
		runAsNonRoot = psc.RunAsNonRoot
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	switch {
	case runAsNonRoot == nil || !*runAsNonRoot:
		t.Error("sidecar may run as root: runAsNonRoot is not true")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("sidecar root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("sidecar allows privilege escalation")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("sidecar is privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("sidecar capabilities %+v, want drop [ALL] and add nothing", sc.Capabilities)
	case seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("sidecar seccomp profile %+v, want RuntimeDefault", seccomp)
	}

	if cfg := v["config"]; cfg != nil && len(cfg.(map[string]any)) > 0 {
		if !slices.Contains(args, "--config=/etc/negotiate-sidecar/config.yaml") {
			t.Errorf("sidecar args %q lack --config", args)
		}
		m := findMount(c, "negotiate-sidecar-config")
		if m == nil || m.MountPath != "/etc/negotiate-sidecar" || !m.ReadOnly || m.SubPath != "" {
			t.Errorf("config mount %+v, want /etc/negotiate-sidecar, read-only, whole directory", m)
		}
	} else if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--config") }) {
		t.Errorf("sidecar args %q pass --config without config", args)
	}
}

// checkSharedConnection checks that both containers get the same connection: the sidecar under the name it
// reads, AzureSignalRConnectionString (WebPubSubConnectionString for Web PubSub), the app under its own setting
// name. That is the connection string from the same Secret key, or as it is with connectionString.inSecret
// false, or each identity-based setting as <name>__<key>.
func checkSharedConnection(t *testing.T, sidecar, app *corev1.Container, v chartutil.Values) {
	sidecarName := "AzureSignalRConnectionString"
	if str(t, v, "sidecar.service") == "webpubsub" {
		sidecarName = "WebPubSubConnectionString"
		if !slices.Contains(sidecar.Args, "--service=webpubsub") {
			t.Errorf("sidecar args %q lack --service=webpubsub", sidecar.Args)
		}
	}
	containers := []struct {
		container *corev1.Container
		name      string
	}{
		{sidecar, sidecarName},
		{app, str(t, v, "connectionString.appSetting")},
	}
	identity, _ := value(t, v, "connectionString.identity").(map[string]any)
	if len(identity) > 0 {
		for _, c := range containers {
			if e := findEnv(c.container, c.name); e != nil {
				t.Errorf("container %s has %s as well as the identity-based settings", c.container.Name, c.name)
			}
			for key, want := range identity {
				e := findEnv(c.container, c.name+"__"+key)
				switch want := want.(type) {
				case string:
					if e == nil || e.Value != want || e.ValueFrom != nil {
						t.Errorf("container %s has %s__%s %+v, want %q", c.container.Name, c.name, key, e, want)
					}
				case map[string]any:
					ref, _ := want["secretKeyRef"].(map[string]any)
					if e == nil || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
						e.ValueFrom.SecretKeyRef.Name != ref["name"] || e.ValueFrom.SecretKeyRef.Key != ref["key"] {
						t.Errorf("container %s has %s__%s %+v, want it from Secret %v", c.container.Name, c.name, key, e, ref)
					}
				default:
					t.Fatalf("connectionString.identity.%s is %T", key, want)
				}
			}
		}
		return
	}
	secret, key := secretName(t, v), str(t, v, "connectionString.key")
	plain := value(t, v, "connectionString.inSecret") == false
	for _, c := range containers {
		e := findEnv(c.container, c.name)
		switch {
		case plain:
			if e == nil || e.ValueFrom != nil || e.Value != str(t, v, "connectionString.value") {
				t.Errorf("container %s has %s %+v, want connectionString.value as it is", c.container.Name, c.name, e)
			}
		case e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil:
			t.Errorf("container %s has no %s from a Secret: %+v", c.container.Name, c.name, e)
		case e.ValueFrom.SecretKeyRef.Name != secret || e.ValueFrom.SecretKeyRef.Key != key:
			ref := e.ValueFrom.SecretKeyRef
			t.Errorf("container %s reads %s from Secret %s key %s, want %s key %s", c.container.Name, c.name, ref.Name, ref.Key, secret, key)
		}
	}
}

// checkSecret checks the Secret the chart creates, or that it creates none for an existing one, for
// identity-based settings or for a connection string kept out of a Secret.
func checkSecret(t *testing.T, o objects, v chartutil.Values) {
	identity, _ := value(t, v, "connectionString.identity").(map[string]any)
	if str(t, v, "connectionString.existingSecret") != "" || len(identity) > 0 || value(t, v, "connectionString.inSecret") == false {
		if len(o.secrets) != 0 {
			t.Errorf("a Secret is rendered although the connection needs none: %v", value(t, v, "connectionString"))
		}
		return
	}
	if len(o.secrets) != 1 {
		t.Fatalf("%d Secrets rendered, want 1", len(o.secrets))
	}
	s := o.secrets[0]
	if s.Name != secretName(t, v) {
		t.Errorf("Secret %s, want %s", s.Name, secretName(t, v))
	}
	if got, want := string(s.Data[str(t, v, "connectionString.key")]), str(t, v, "connectionString.value"); got != want || len(s.Data) != 1 {
		t.Errorf("Secret data %q, want only %s: %q", s.Data, str(t, v, "connectionString.key"), want)
	}
}

// checkConfigMap checks that the configuration file holds the config value unchanged. The dashboard's
// ConfigMap, checked by checkMonitoring, is left out.
func checkConfigMap(t *testing.T, o objects, v chartutil.Values) {
	var configs []*corev1.ConfigMap
	for _, c := range o.configMaps {
		if _, ok := c.Data[dashboardFile]; !ok {
			configs = append(configs, c)
		}
	}
	cfg, _ := v["config"].(map[string]any)
	if len(cfg) == 0 {
		if len(configs) != 0 {
			t.Error("a ConfigMap is rendered without config")
		}
		return
	}
	if len(configs) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(configs))
	}
	var got map[string]any
	if err := yaml.UnmarshalStrict([]byte(configs[0].Data["config.yaml"]), &got); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(cfg) {
		t.Errorf("config.yaml holds %v, want %v", got, cfg)
	}
}

// checkExtras checks the optional objects against the Deployment they serve.
func checkExtras(t *testing.T, o objects, d *appsv1.Deployment, sidecar *corev1.Container, v chartutil.Values) {
	pod := d.Spec.Template
	admin := int32(integer(t, v, "sidecar.adminPort"))

	if boolean(t, v, "metrics.serviceMonitor.enabled") {
		if len(o.serviceMonitors) != 1 {
			t.Fatalf("%d ServiceMonitors", len(o.serviceMonitors))
		}
		sm := o.serviceMonitors[0]
		sel, err := metaSelector(sm.Spec.Selector.MatchLabels)
		if err != nil {
			t.Fatal(err)
		}
		var selected []*corev1.Service
		for _, s := range o.services {
			if sel.Matches(labels.Set(s.Labels)) {
				selected = append(selected, s)
			}
		}
		if len(selected) != 1 || selected[0].Labels["app.kubernetes.io/component"] != "metrics" {
			t.Fatalf("ServiceMonitor selects %d Services, want the metrics Service alone", len(selected))
		}
		ms := selected[0]
		checkServiceSelects(t, ms, pod)
		if len(ms.Spec.Ports) != 1 || ms.Spec.Ports[0].Name != "admin" || ms.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Fatalf("metrics Service ports %+v type %s, want only admin, ClusterIP", ms.Spec.Ports, ms.Spec.Type)
		}
		if c, p := resolvePort(t, pod.Spec, ms.Spec.Ports[0].TargetPort); c != sidecar.Name || p.ContainerPort != admin {
			t.Errorf("metrics Service targets %s port %d, want the sidecar's admin port %d", c, p.ContainerPort, admin)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints %+v, want /metrics on port admin", sm.Spec.Endpoints)
		}
		if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
			t.Errorf("ServiceMonitor namespaces %v, want [%s]", sm.Spec.NamespaceSelector.MatchNames, namespace)
		}
		for k, want := range stringMap(t, v, "metrics.serviceMonitor.labels") {
			if sm.Labels[k] != want {
				t.Errorf("ServiceMonitor label %s=%q, want %q", k, sm.Labels[k], want)
			}
		}
	}

	if boolean(t, v, "autoscaling.enabled") {
		h := o.hpas[0]
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != d.Name || h.Spec.ScaleTargetRef.APIVersion != "apps/v1" {
			t.Errorf("HorizontalPodAutoscaler scales %+v, want Deployment %s", h.Spec.ScaleTargetRef, d.Name)
		}
		if h.Spec.MinReplicas == nil || int(*h.Spec.MinReplicas) != integer(t, v, "autoscaling.minReplicas") || int(h.Spec.MaxReplicas) != integer(t, v, "autoscaling.maxReplicas") {
			t.Errorf("HorizontalPodAutoscaler replicas %v..%d", h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		if len(h.Spec.Metrics) == 0 {
			t.Error("HorizontalPodAutoscaler has no metric")
		}
	}

	if boolean(t, v, "podDisruptionBudget.enabled") {
		p := o.pdbs[0]
		sel, err := metaSelector(p.Spec.Selector.MatchLabels)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("PodDisruptionBudget selector %v does not select the pods", p.Spec.Selector)
		}
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			t.Errorf("PodDisruptionBudget needs exactly one of minAvailable and maxUnavailable: %+v", p.Spec)
		}
	}

	if boolean(t, v, "networkPolicy.enabled") {
		np := o.networkPolicies[0]
		sel, err := metaSelector(np.Spec.PodSelector.MatchLabels)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("NetworkPolicy selector %v does not select the pods", np.Spec.PodSelector)
		}
		if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != "Ingress" || len(np.Spec.Egress) != 0 {
			t.Errorf("NetworkPolicy types %v egress %v, want ingress only", np.Spec.PolicyTypes, np.Spec.Egress)
		}
		admitted := map[int32]bool{}
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy rule %+v admits every port", rule)
			}
			for _, p := range rule.Ports {
				if p.Port == nil || p.Port.Type != intstr.Int || p.EndPort != nil {
					t.Errorf("NetworkPolicy port %+v, want one numbered port", p)
					continue
				}
				admitted[p.Port.IntVal] = true
			}
		}
		want := map[int32]bool{int32(integer(t, v, "sidecar.port")): true, admin: true}
		if !maps.Equal(admitted, want) {
			t.Errorf("NetworkPolicy admits ports %v, want only the sidecar's %v", admitted, want)
		}
	}
}

// checkPodSpec checks what the API server would refuse in a pod and decoding does not catch.
func checkPodSpec(t *testing.T, spec corev1.PodSpec) {
	containers := slices.Concat(spec.InitContainers, spec.Containers)
	names, portNames := map[string]bool{}, map[string]bool{}
	volumes := map[string]bool{}
	for _, vol := range spec.Volumes {
		if volumes[vol.Name] {
			t.Errorf("volume %s given twice", vol.Name)
		}
		volumes[vol.Name] = true
	}
	for _, c := range containers {
		if names[c.Name] {
			t.Errorf("container name %s given twice", c.Name)
		}
		names[c.Name] = true
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			t.Errorf("container name %s: %s", c.Name, msg)
		}
		if c.Image == "" {
			t.Errorf("container %s has no image", c.Name)
		}
		for _, p := range c.Ports {
			if p.Name == "" {
				continue
			}
			if portNames[p.Name] {
				t.Errorf("port name %s given twice in the pod", p.Name)
			}
			portNames[p.Name] = true
			for _, msg := range validation.IsValidPortName(p.Name) {
				t.Errorf("port name %s: %s", p.Name, msg)
			}
		}
		for _, e := range c.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				t.Errorf("container %s env %s: %s", c.Name, e.Name, msg)
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name)
			}
		}
	}
}

// checkObjectNames checks object names and labels against Kubernetes' rules.
func checkObjectNames(t *testing.T, o objects) {
	check := func(kind, name string, lbls map[string]string, isService bool) {
		msgs := validation.IsDNS1123Subdomain(name)
		if isService {
			msgs = validation.IsDNS1035Label(name)
		}
		for _, msg := range msgs {
			t.Errorf("%s name %q: %s", kind, name, msg)
		}
		for k, val := range lbls {
			for _, msg := range slices.Concat(validation.IsQualifiedName(k), validation.IsValidLabelValue(val)) {
				t.Errorf("%s %s label %s=%q: %s", kind, name, k, val, msg)
			}
		}
	}
	for _, d := range o.deployments {
		check("Deployment", d.Name, d.Labels, false)
		check("pod template", d.Name, d.Spec.Template.Labels, false)
	}
	for _, s := range o.services {
		check("Service", s.Name, s.Labels, true)
	}
	for _, s := range o.secrets {
		check("Secret", s.Name, s.Labels, false)
	}
	for _, c := range o.configMaps {
		check("ConfigMap", c.Name, c.Labels, false)
	}
}

// checkServiceSelects checks that a Service's selector selects the pods.
func checkServiceSelects(t *testing.T, s *corev1.Service, pod corev1.PodTemplateSpec) {
	if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service %s selector %v does not select the pods (%v)", s.Name, s.Spec.Selector, pod.Labels)
	}
}

// resolvePort finds the container port a Service or probe port refers to, by name or number.
func resolvePort(t *testing.T, spec corev1.PodSpec, port intstr.IntOrString) (string, corev1.ContainerPort) {
	t.Helper()
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, p := range c.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return c.Name, p
			}
		}
	}
	t.Errorf("port %s is no container's", port.String())
	return "", corev1.ContainerPort{}
}

// findSidecar finds the sidecar container and says whether it is an init container.
func findSidecar(t *testing.T, spec corev1.PodSpec, name string) (*corev1.Container, bool) {
	t.Helper()
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == name {
			if slices.ContainsFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == name }) {
				t.Errorf("sidecar %s is both an init container and a container", name)
			}
			return &spec.InitContainers[i], true
		}
	}
	return findContainer(t, spec.Containers, name), false
}

func findContainer(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func findEnv(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func findMount(c *corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func metaSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

// secretName is the Secret the chart's values name: the existing one or the one the chart creates.
func secretName(t *testing.T, v chartutil.Values) string {
	t.Helper()
	if s := str(t, v, "connectionString.existingSecret"); s != "" {
		return s
	}
	full := str(t, v, "fullnameOverride")
	if full == "" {
		full = releaseName + "-negotiate-sidecar"
	}
	return full + "-signalr"
}

// value reads a dotted path of the rendered values.
func value(t *testing.T, v chartutil.Values, path string) any {
	t.Helper()
	x, err := v.PathValue(path)
	if err != nil {
		// Helm drops keys set to null, and PathValue cannot reach lists or maps.
		parent, key := ".", path
		if i := strings.LastIndex(path, "."); i >= 0 {
			parent, key = path[:i], path[i+1:]
		}
		table := v
		if parent != "." {
			if table, err = v.Table(parent); err != nil {
				t.Fatalf("value %s: %v", path, err)
			}
		}
		return table[key]
	}
	return x
}

func str(t *testing.T, v chartutil.Values, path string) string {
	t.Helper()
	s, _ := value(t, v, path).(string)
	return s
}

func boolean(t *testing.T, v chartutil.Values, path string) bool {
	t.Helper()
	b, _ := value(t, v, path).(bool)
	return b
}

func integer(t *testing.T, v chartutil.Values, path string) int {
	t.Helper()
	switch x := value(t, v, path).(type) {
	case float64:
		return int(x)
	case int64:
		return int(x)
	case int:
		return x
	default:
		t.Fatalf("value %s is %T, not a number", path, x)
		return 0
	}
}

func stringList(t *testing.T, v chartutil.Values, path string) []string {
	t.Helper()
	var out []string
	list, _ := value(t, v, path).([]any)
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func stringMap(t *testing.T, v chartutil.Values, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	m, _ := value(t, v, path).(map[string]any)
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

// TestChartSchemaRejectsBadValues checks that values.schema.json turns away misspelt keys and impossible
// values before anything is rendered, each with a message naming the value.
func TestChartSchemaRejectsBadValues(t *testing.T) {
	base := readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml"))
	cases := []struct {
		name   string
		values string
		want   string
	}{
		{"unknown top-level key", "replicas: 3", "replicas"},
		{"misspelt nested key", "sidecar:\n  imge:\n    tag: v1", "imge"},
		{"log level", "sidecar:\n  logLevel: verbose", "logLevel"},
		{"port out of range", "functions:\n  port: 70000", "port"},
		{"port as a string", "sidecar:\n  adminPort: \"9090\"", "adminPort"},
		{"symmetric algorithm", "auth:\n  algorithms: [HS256]", "algorithms"},
		{"issuer without scheme", "auth:\n  issuer: login.microsoftonline.com", "issuer"},
		{"insecure http as a string", "auth:\n  insecureHttp: \"true\"", "insecureHttp"},
		{"secret key with a space", "connectionString:\n  key: connection string", "key"},
		{"service type", "service:\n  type: Ingress", "type"},
		{"disruption budget", "podDisruptionBudget:\n  minAvailable: half", "minAvailable"},
		{"probe with its own handler", "sidecar:\n  livenessProbe:\n    httpGet:\n      path: /", "httpGet"},
		{"duration", "sidecar:\n  shutdownTimeout: 15", "shutdownTimeout"},
		{"delay without a unit", "sidecar:\n  shutdownDelay: \"5\"", "shutdownDelay"},
		{"no connections", "sidecar:\n  maxConnections: 0", "maxConnections"},
		{"negative grace period", "terminationGracePeriodSeconds: -1", "terminationGracePeriodSeconds"},
		{"lifecycle as a list", "functions:\n  lifecycle: []", "lifecycle"},
		{"negotiate path", "sidecar:\n  negotiatePaths: [api/negotiate]", "negotiatePaths"},
		{"client secret as it is", "connectionString:\n  identity:\n    clientSecret: not-a-real-secret", "clientSecret"},
		{"credential", "connectionString:\n  identity:\n    credential: ManagedIdentityCredential", "credential"},
		{"misspelt identity setting", "connectionString:\n  identity:\n    serviceURI: https://example.service.signalr.net", "serviceURI"},
		{"service URI with a path", "connectionString:\n  identity:\n    serviceUri: https://example.service.signalr.net/api", "serviceUri"},
		{"client id not a GUID", "azureWorkloadIdentity:\n  clientId: chat-identity", "clientId"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vals := overlayYAML(t, copyValues(t, base), tc.values)
			_, err := render(loadChart(t, chartDir), vals, kubeVersion)
			if err == nil {
				t.Fatalf("values %q accepted", tc.values)
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want a schema error naming %s", err, tc.want)
			}
		})
	}
}

// TestChartRefusesIncompleteValues checks the messages of what the schema cannot express: each tells the
// user which value to set.
func TestChartRefusesIncompleteValues(t *testing.T) {
	base := readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml"))
	cases := []struct {
		name   string
		values string
		kube   string
		want   string
	}{
		{"no Functions image", "functions:\n  image:\n    repository: \"\"", kubeVersion, "functions.image.repository is required"},
		{"no Functions tag", "functions:\n  image:\n    tag: \"\"", kubeVersion, "functions.image.tag or functions.image.digest is required"},
		{"no identity provider", "auth:\n  issuer: \"\"", kubeVersion, "set auth.issuer and auth.audiences"},
		{"no audience", "auth:\n  audiences: []", kubeVersion, "auth.audiences is required with auth.issuer"},
		{"no connection string", "connectionString:\n  value: \"\"", kubeVersion, "set connectionString.existingSecret"},
		{"same ports", "functions:\n  port: 8080", kubeVersion, "functions.port 8080 is also a port of the sidecar"},
		{"admin port is proxy port", "sidecar:\n  adminPort: 8080", kubeVersion, "sidecar.port and sidecar.adminPort must differ"},
		{"zero shutdown timeout", "sidecar:\n  shutdownTimeout: 0s", kubeVersion, "sidecar.shutdownTimeout must be positive"},
		{"grace period shorter than the shutdown", "terminationGracePeriodSeconds: 19", kubeVersion,
			"terminationGracePeriodSeconds 19 is shorter than the shutdown needs, 20s (the shutdown delay 5s plus the timeout 15s)"},
		{"grace period shorter than a native sidecar's shutdown", "nativeSidecar: true\nterminationGracePeriodSeconds: 20", kubeVersion,
			"terminationGracePeriodSeconds 20 is shorter than the shutdown needs, 25s"},
		{"native sidecar on 1.28", "nativeSidecar: true", "v1.28.9", "nativeSidecar needs Kubernetes 1.29 or later"},
		{"identity and a connection string", "connectionString:\n  identity:\n    serviceUri: https://example.service.signalr.net", kubeVersion,
			"set connectionString.identity or a connection string (connectionString.existingSecret or connectionString.value), not both"},
		{"identity without a service URI", "connectionString:\n  value: \"\"\n  identity:\n    credential: workloadidentity", kubeVersion,
			"connectionString.identity.serviceUri is required"},
		{"access key out of a Secret", "connectionString:\n  inSecret: false", kubeVersion,
			"connectionString.value holds an AccessKey or a ClientSecret: keep it in a Secret"},
		{"client secret out of a Secret", "connectionString:\n  inSecret: false\n  value: Endpoint=https://example.service.signalr.net;AuthType=azure.app;ClientId=c;TenantId=t;clientsecret=x;Version=1.0;", kubeVersion,
			"connectionString.value holds an AccessKey or a ClientSecret"},
		{"existing Secret out of a Secret", "connectionString:\n  inSecret: false\n  value: \"\"\n  existingSecret: chat", kubeVersion,
			"connectionString.inSecret is false, but connectionString.existingSecret names a Secret"},
		{"workload identity without a client id", "azureWorkloadIdentity:\n  enabled: true", kubeVersion, "azureWorkloadIdentity.clientId is required"},
		{"workload identity with a ServiceAccount of your own", "azureWorkloadIdentity:\n  enabled: true\nserviceAccount:\n  create: false\n  name: chat", kubeVersion,
			"serviceAccount.create is false, so the chart cannot annotate ServiceAccount chat for workload identity: annotate it with azure.workload.identity/client-id and set azureWorkloadIdentity.serviceAccountAnnotated=true"},
		{"client id for a ServiceAccount of your own", "azureWorkloadIdentity:\n  enabled: true\n  clientId: 22222222-2222-2222-2222-222222222222\n  serviceAccountAnnotated: true\nserviceAccount:\n  create: false", kubeVersion,
			"with serviceAccount.create=false, annotate ServiceAccount default with azure.workload.identity/client-id yourself"},
		{"two client ids", "azureWorkloadIdentity:\n  enabled: true\n  clientId: 22222222-2222-2222-2222-222222222222\nserviceAccount:\n  annotations:\n    azure.workload.identity/client-id: 44444444-4444-4444-4444-444444444444", kubeVersion,
			"serviceAccount.annotations sets azure.workload.identity/client-id to 44444444-4444-4444-4444-444444444444, azureWorkloadIdentity to 22222222-2222-2222-2222-222222222222: keep one"},
		{"autoscaling without target", "autoscaling:\n  enabled: true\n  targetCPUUtilizationPercentage: null", kubeVersion, "autoscaling needs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vals := overlayYAML(t, copyValues(t, base), tc.values)
			_, err := render(loadChart(t, chartDir), vals, tc.kube)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestChartReplicasLeftToKEDA checks that replicaCount: null leaves the number of pods to whatever scales
// the Deployment, such as a KEDA ScaledObject, so that an upgrade does not reset it.
func TestChartReplicasLeftToKEDA(t *testing.T) {
	vals := overlay(readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml")), map[string]any{"replicaCount": nil})
	o := decode(t, mustRender(t, chartDir, vals).manifests)
	if r := o.deployments[0].Spec.Replicas; r != nil {
		t.Errorf("replicas %d, want none", *r)
	}
	if o.kinds["HorizontalPodAutoscaler"] != 0 {
		t.Error("a HorizontalPodAutoscaler is rendered")
	}
}

// TestChartIncludedByParent renders examples/parent-chart, a chart that adds the sidecar to its own
// Deployment with the chart's named templates, as a regular and as a native sidecar.
func TestChartIncludedByParent(t *testing.T) {
	for _, native := range []bool{false, true} {
		t.Run(fmt.Sprintf("nativeSidecar=%v", native), func(t *testing.T) {
			parent := loadChart(t, filepath.Join("examples", "parent-chart"))
			sidecar := loadChart(t, chartDir)
			dep := parent.Metadata.Dependencies
			if len(dep) != 1 || dep[0].Name != sidecar.Name() || dep[0].Repository != "file://../../negotiate-sidecar" {
				t.Fatalf("parent dependencies %+v, want negotiate-sidecar from file://../../negotiate-sidecar", dep)
			}
			if dep[0].Version != sidecar.Metadata.Version {
				t.Errorf("parent depends on version %s, the chart is %s", dep[0].Version, sidecar.Metadata.Version)
			}
			parent.AddDependency(sidecar)
			user := map[string]any{"negotiate-sidecar": map[string]any{"nativeSidecar": native}}
			r, err := render(parent, user, kubeVersion)
			if err != nil {
				t.Fatal(err)
			}
			o := decode(t, r.manifests)
			want := map[string]int{"Deployment": 1, "Service": 1, "ConfigMap": 1}
			if !maps.Equal(o.kinds, want) {
				t.Errorf("rendered kinds %v, want %v", o.kinds, want)
			}
			v := r.chartValues(t, "negotiate-sidecar")
			d := o.deployments[0]
			pod := d.Spec.Template
			checkPodSpec(t, pod.Spec)
			c, isInit := findSidecar(t, pod.Spec, str(t, v, "sidecar.name"))
			if isInit != native {
				t.Errorf("sidecar is an init container: %v, want %v", isInit, native)
			}
			checkSidecar(t, pod.Spec, c, v)
			app := findContainer(t, pod.Spec.Containers, "chat")
			checkSharedConnection(t, c, app, v)
			checkShutdown(t, pod.Spec, c, app, v)
			checkConfigMap(t, o, v)
			cm := o.configMaps[0]
			var vol *corev1.Volume
			for i := range pod.Spec.Volumes {
				if pod.Spec.Volumes[i].Name == "negotiate-sidecar-config" {
					vol = &pod.Spec.Volumes[i]
				}
			}
			if vol == nil || vol.ConfigMap == nil || vol.ConfigMap.Name != cm.Name {
				t.Errorf("config volume %+v, want ConfigMap %s", vol, cm.Name)
			}
			if pod.Annotations["checksum/negotiate-sidecar-config"] == "" {
				t.Errorf("pod annotations %v lack the config checksum", pod.Annotations)
			}
			svc := o.services[0]
			checkServiceSelects(t, svc, pod)
			for _, p := range svc.Spec.Ports {
				if name, port := resolvePort(t, pod.Spec, p.TargetPort); name != c.Name || port.Name != "http" {
					t.Errorf("parent Service targets %s port %s, want the sidecar's http port", name, port.Name)
				}
			}
		})
	}
}

// overlay sets the values of override over base, recursively, and returns base. A null in override stays
// null, so that Helm drops the chart's default as it does for a user's values file.
func overlay(base, override map[string]any) map[string]any {
	for k, o := range override {
		if om, ok := o.(map[string]any); ok {
			if bm, ok := base[k].(map[string]any); ok {
				base[k] = overlay(bm, om)
				continue
			}
		}
		base[k] = o
	}
	return base
}

// overlayYAML sets the values written as YAML in text over base, as overlay does, and returns base.
func overlayYAML(t *testing.T, base map[string]any, text string) map[string]any {
	t.Helper()
	override, err := chartutil.ReadValues([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return overlay(base, override.AsMap())
}

// copyValues deep-copies values, so that coalescing into them leaves the original alone.
func copyValues(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := chartutil.ReadValues(b)
	if err != nil {
		t.Fatal(err)
	}
	return out.AsMap()
}

// TestChartFunctionsProbes checks that the Functions container is probed by default, on its own port, so
// that a pod is Ready only when the app answers as well as the sidecar, and that a user can turn a probe off.
func TestChartFunctionsProbes(t *testing.T) {
	values := readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml"))
	o := decode(t, mustRender(t, chartDir, values).manifests)
	app := findContainer(t, o.deployments[0].Spec.Template.Spec.Containers, "functions")
	for name, p := range map[string]*corev1.Probe{"startup": app.StartupProbe, "readiness": app.ReadinessProbe, "liveness": app.LivenessProbe} {
		if p == nil {
			t.Errorf("the Functions container has no %s probe", name)
			continue
		}
		var port string
		switch {
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port.String()
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port.String()
		}
		if port != "functions" {
			t.Errorf("the %s probe checks port %q, not the Functions port", name, port)
		}
	}
	if p := app.StartupProbe; p != nil && int(p.PeriodSeconds)*int(p.FailureThreshold) < 60 {
		t.Errorf("the startup probe allows %ds for the Functions host to start; want at least a minute", p.PeriodSeconds*p.FailureThreshold)
	}

	off := overlay(values, map[string]any{"functions": map[string]any{"readinessProbe": nil}})
	o = decode(t, mustRender(t, chartDir, off).manifests)
	if app := findContainer(t, o.deployments[0].Spec.Template.Spec.Containers, "functions"); app.ReadinessProbe != nil {
		t.Errorf("readinessProbe: null still renders a probe: %+v", app.ReadinessProbe)
	}
}
