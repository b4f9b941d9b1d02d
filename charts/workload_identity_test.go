package charts

import (
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
)

// The names the Azure Workload Identity webhook acts on (Azure/azure-workload-identity, pkg/webhook/consts.go):
// it mutates only pods with the label, and reads the identity from their ServiceAccount's annotations.
const (
	workloadIdentityLabel    = "azure.workload.identity/use"
	workloadIdentityClientID = "azure.workload.identity/client-id"
	workloadIdentityTenantID = "azure.workload.identity/tenant-id"
)

// checkWorkloadIdentity checks what the webhook needs, or that the chart asks nothing of it when
// azureWorkloadIdentity is off: the label on the pods, and the identity on the ServiceAccount the chart creates.
func checkWorkloadIdentity(t *testing.T, o objects, v chartutil.Values) {
	t.Helper()
	pod := o.deployments[0].Spec.Template
	enabled := boolean(t, v, "azureWorkloadIdentity.enabled")
	label, labelled := pod.Labels[workloadIdentityLabel]
	switch {
	case enabled && label != "true":
		t.Errorf("pod label %s=%q, want \"true\": the webhook leaves the pods alone", workloadIdentityLabel, label)
	case !enabled && labelled && stringMap(t, v, "podLabels")[workloadIdentityLabel] != label:
		t.Errorf("pod label %s=%q without azureWorkloadIdentity", workloadIdentityLabel, label)
	}
	if !boolean(t, v, "serviceAccount.create") {
		if len(o.serviceAccounts) != 0 {
			t.Errorf("a ServiceAccount is rendered with serviceAccount.create false")
		}
		return
	}
	if len(o.serviceAccounts) != 1 {
		t.Fatalf("%d ServiceAccounts, want 1", len(o.serviceAccounts))
	}
	sa := o.serviceAccounts[0]
	want := stringMap(t, v, "serviceAccount.annotations")
	if enabled {
		if id := str(t, v, "azureWorkloadIdentity.clientId"); id != "" {
			want[workloadIdentityClientID] = id
		}
		if id := str(t, v, "azureWorkloadIdentity.tenantId"); id != "" {
			want[workloadIdentityTenantID] = id
		}
		if want[workloadIdentityClientID] == "" {
			t.Errorf("workload identity without a client id rendered")
		}
		if pod.Annotations["checksum/negotiate-sidecar-workload-identity"] == "" {
			t.Errorf("pod annotations %v lack the workload identity checksum, so a new client id reaches no pod", pod.Annotations)
		}
	}
	if len(sa.Annotations) != len(want) {
		t.Errorf("ServiceAccount annotations %v, want %v", sa.Annotations, want)
	}
	for k, w := range want {
		if sa.Annotations[k] != w {
			t.Errorf("ServiceAccount annotation %s=%q, want %q", k, sa.Annotations[k], w)
		}
	}
}

// TestChartWorkloadIdentity renders azureWorkloadIdentity the ways a user sets it up and checks that the
// webhook would find the pods and their identity, with the API token still not mounted.
func TestChartWorkloadIdentity(t *testing.T) {
	const clientID, tenantID = "22222222-2222-2222-2222-222222222222", "33333333-3333-3333-3333-333333333333"
	cases := []struct {
		name   string
		values string
		sa     string // the pods' ServiceAccount
	}{
		{"off", "", "chat-negotiate-sidecar"},
		{"client id", "azureWorkloadIdentity:\n  enabled: true\n  clientId: " + clientID, "chat-negotiate-sidecar"},
		{"client and tenant id", "azureWorkloadIdentity:\n  enabled: true\n  clientId: " + clientID + "\n  tenantId: " + tenantID, "chat-negotiate-sidecar"},
		{"native sidecar", "nativeSidecar: true\nazureWorkloadIdentity:\n  enabled: true\n  clientId: " + clientID, "chat-negotiate-sidecar"},
		{"client id in serviceAccount.annotations", "azureWorkloadIdentity:\n  enabled: true\nserviceAccount:\n  annotations:\n    " +
			workloadIdentityClientID + ": " + clientID, "chat-negotiate-sidecar"},
		{"the label in podLabels as well", "azureWorkloadIdentity:\n  enabled: true\n  clientId: " + clientID + "\npodLabels:\n  " +
			workloadIdentityLabel + ": \"false\"\n  team: chat", "chat-negotiate-sidecar"},
		{"annotated ServiceAccount of your own", "azureWorkloadIdentity:\n  enabled: true\n  serviceAccountAnnotated: true\nserviceAccount:\n  create: false\n  name: chat",
			"chat"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vals := overlayYAML(t, readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml")), tc.values)
			r := mustRender(t, chartDir, vals)
			o := decode(t, r.manifests)
			v := r.chartValues(t, "")
			checkWorkload(t, o, v)
			spec := o.deployments[0].Spec.Template.Spec
			if spec.ServiceAccountName != tc.sa {
				t.Errorf("pods use ServiceAccount %s, want %s", spec.ServiceAccountName, tc.sa)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("automountServiceAccountToken %v, want false: the webhook's token volume does not need it", spec.AutomountServiceAccountToken)
			}
			if tc.name == "the label in podLabels as well" && o.deployments[0].Spec.Template.Labels["team"] != "chat" {
				t.Errorf("pod labels %v lack podLabels", o.deployments[0].Spec.Template.Labels)
			}
		})
	}
}

// TestChartWorkloadIdentityRefusedInParent checks that a chart adding the sidecar to its own pods is told to
// label them and annotate their ServiceAccount itself, rather than azureWorkloadIdentity doing nothing.
func TestChartWorkloadIdentityRefusedInParent(t *testing.T) {
	parent := loadChart(t, filepath.Join("examples", "parent-chart"))
	parent.AddDependency(loadChart(t, chartDir))
	user := map[string]any{"negotiate-sidecar": map[string]any{
		"azureWorkloadIdentity": map[string]any{"enabled": true, "clientId": "22222222-2222-2222-2222-222222222222"},
	}}
	_, err := render(parent, user, kubeVersion)
	want := `azureWorkloadIdentity.enabled needs the chart's workload (workload.enabled=true); with your own pod template, label it azure.workload.identity/use: "true" and annotate its ServiceAccount with azure.workload.identity/client-id`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want one containing %q", err, want)
	}
}
