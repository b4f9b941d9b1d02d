// Package charts tests the Helm chart in negotiate-sidecar/, the examples in examples/ and the repository's
// Dockerfile, with the Helm SDK and the Kubernetes API types instead of a helm binary or a cluster.
//
// It is a module of its own so that the sidecar's go.mod does not carry Helm and Kubernetes. Run it with
//
//	cd charts && go test ./...
//
// and regenerate the values table of negotiate-sidecar/README.md after changing values.yaml with
//
//	go test -run TestChartReadmeValuesTable -update
package charts
