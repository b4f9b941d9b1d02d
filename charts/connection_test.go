package charts

import (
	"path/filepath"
	"testing"
)

// TestChartConnectionByIdentity renders the ways to connect with Microsoft Entra ID instead of an access key
// and checks that both containers get the same connection, with no Secret created for one that holds no
// secret.
func TestChartConnectionByIdentity(t *testing.T) {
	cases := []struct {
		name    string
		values  string
		secrets int
	}{
		{"connection string without a secret", `connectionString:
  value: Endpoint=https://example.service.signalr.net;AuthType=azure.msi;ClientId=22222222-2222-2222-2222-222222222222;Version=1.0;
  inSecret: false`, 0},
		{"connection string with a client secret, in the Secret", `connectionString:
  value: Endpoint=https://example.service.signalr.net;AuthType=azure.app;TenantId=t;ClientId=c;ClientSecret=not-a-real-secret;Version=1.0;`, 1},
		{"identity-based settings", `connectionString:
  value: ""
  appSetting: SignalR
  identity:
    serviceUri: https://example.service.signalr.net
    credential: workloadidentity
    clientId: 22222222-2222-2222-2222-222222222222`, 0},
		{"identity-based settings with a client secret from a Secret", `connectionString:
  value: ""
  identity:
    serviceUri: https://example.service.signalr.net
    tenantId: 33333333-3333-3333-3333-333333333333
    clientId: 22222222-2222-2222-2222-222222222222
    clientSecret:
      secretKeyRef:
        name: chat-entra
        key: client-secret
    serverEndpoint: https://example-private.service.signalr.net
    clientEndpoint: https://signalr.example.com`, 0},
		{"identity-based settings for Web PubSub", `sidecar:
  service: webpubsub
connectionString:
  value: ""
  appSetting: WebPubSubConnectionString
  identity:
    serviceUri: https://example.webpubsub.azure.com`, 0},
		{"identity-based settings as a native sidecar", `nativeSidecar: true
connectionString:
  value: ""
  identity:
    serviceUri: https://example.service.signalr.net`, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vals := overlayYAML(t, readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml")), tc.values)
			r := mustRender(t, chartDir, vals)
			o := decode(t, r.manifests)
			v := r.chartValues(t, "")
			if len(o.secrets) != tc.secrets {
				t.Errorf("%d Secrets, want %d", len(o.secrets), tc.secrets)
			}
			checkSecret(t, o, v)
			checkWorkload(t, o, v) // both containers get the same connection
			pod := o.deployments[0].Spec.Template
			if _, ok := pod.Annotations["checksum/negotiate-sidecar-secret"]; ok != (tc.secrets == 1) {
				t.Errorf("pod annotations %v: Secret checksum %v with %d Secrets", pod.Annotations, ok, tc.secrets)
			}
		})
	}
}

// TestChartConnectionIncludedByParent checks that a chart of your own gives its app the identity-based
// settings through "negotiate-sidecar.connectionStringEnv", as the sidecar gets them.
func TestChartConnectionIncludedByParent(t *testing.T) {
	parent := loadChart(t, filepath.Join("examples", "parent-chart"))
	parent.AddDependency(loadChart(t, chartDir))
	user := map[string]any{"negotiate-sidecar": map[string]any{"connectionString": map[string]any{
		"existingSecret": "",
		"identity":       map[string]any{"serviceUri": "https://example.service.signalr.net", "credential": "managedidentity"},
	}}}
	r, err := render(parent, user, kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, r.manifests)
	v := r.chartValues(t, "negotiate-sidecar")
	if len(o.secrets) != 0 {
		t.Errorf("%d Secrets, want none", len(o.secrets))
	}
	spec := o.deployments[0].Spec.Template.Spec
	sidecar, _ := findSidecar(t, spec, str(t, v, "sidecar.name"))
	checkSharedConnection(t, sidecar, findContainer(t, spec.Containers, "chat"), v)
}
