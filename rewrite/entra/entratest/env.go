package entratest

import (
	"os"
	"testing"
)

// IsolateEnv unsets, for the test, every variable that steers azidentity's
// choice of credential or source, so that the machine's environment cannot.
// t.Setenv cannot unset, and an empty AZURE_CLIENT_ID still counts as set for
// DefaultAzureCredential (azidentity default_azure_credential.go, LookupEnv).
func IsolateEnv(t testing.TB) {
	t.Helper()
	for _, k := range []string{
		"AZURE_AUTHORITY_HOST", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
		"AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE",
		"AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_TOKEN_CREDENTIALS", "AZURE_ADDITIONALLY_ALLOWED_TENANTS",
		"AZURE_REGIONAL_AUTHORITY_NAME", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
		"MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
	} {
		t.Setenv(k, "") // registers the restore
		os.Unsetenv(k)
	}
}

// Setenv sets each variable for the test, as t.Setenv does.
func Setenv(t testing.TB, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
}
