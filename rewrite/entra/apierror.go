package entra

import (
	"fmt"
	"net/http"
)

// api describes one of the service's APIs the sidecar calls with its
// identity, for the messages of its failures.
type api struct {
	asking   string // what the sidecar asks for
	resource string // the kind of Azure resource that answers
	role     string // the role the identity needs there
	notFound string // what to check when it answers 404
	tenant   string // the setting that names the tenant
	token    bool   // it issues client tokens (else: keys)
}

// The key API of Azure SignalR Service and the token API of Azure Web PubSub.
var (
	keyAPI = api{asking: "a key", resource: "SignalR", role: "SignalR App Server",
		notFound: "check the endpoint (Endpoint, ServerEndpoint or serviceUri); it must be the SignalR resource's", tenant: "TenantId"}
	tokenAPI = api{asking: "a client token", resource: "Web PubSub", role: "Web PubSub Service Owner",
		notFound: "check serviceUri; it must be the Web PubSub resource's endpoint", tenant: "tenantId", token: true}
)

// APIError is a failed request to the key API or the token API.
type APIError struct {
	api    api
	URL    string // the API, without query
	Status int    // the HTTP status; 0 when none came back
	Err    error
}

func (e *APIError) Error() string {
	switch e.Status {
	case 0:
		return fmt.Sprintf("asking %s for %s: %v", e.URL, e.api.asking, e.Err)
	case http.StatusUnauthorized:
		return fmt.Sprintf("%s refused the identity's token (401): the identity must belong to the tenant of the %s resource", e.URL, e.api.resource)
	case http.StatusForbidden:
		return fmt.Sprintf("%s answered 403: the identity lacks the %q role on the %s resource; assign it (role assignments take up to 30 minutes to apply)", e.URL, e.api.role, e.api.resource)
	case http.StatusNotFound:
		return fmt.Sprintf("%s answered 404: %s", e.URL, e.api.notFound)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s answered %d: %v", e.URL, e.Status, e.Err)
	}
	return fmt.Sprintf("%s answered %d", e.URL, e.Status)
}

func (e *APIError) Unwrap() error { return e.Err }

// Role is the role the identity needs for the API.
func (e *APIError) Role() string { return e.api.role }

// Resource is the kind of Azure resource the API belongs to.
func (e *APIError) Resource() string { return e.api.resource }

// TenantSetting names the setting that gives the identity's tenant.
func (e *APIError) TenantSetting() string { return e.api.tenant }

// IssuesTokens reports whether the API is Web PubSub's token API, which a
// negotiate calls, rather than the key API, which is called in the background.
func (e *APIError) IssuesTokens() bool { return e.api.token }
