package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestMemoryLimit: the soft memory limit is 90% of the container's, read as
// cgroup v2 or v1 presents it inside a container, and none is set when
// GOMEMLIMIT is or when there is no limit to read.
func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string // under the cgroup root
		gomemlim  string
		want      int64
		wantLimit int64 // of containerMemoryLimit, 0 for none
	}{
		{"cgroup v2", map[string]string{"memory.max": "134217728\n"}, "", 120795955, 134217728},
		{"cgroup v2 without a limit", map[string]string{"memory.max": "max\n"}, "", 0, 0},
		{"cgroup v1", map[string]string{"memory/memory.limit_in_bytes": "67108864\n"}, "", 60397977, 67108864},
		{"cgroup v1 without a limit", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, "", 0, 0},
		{"v2 before v1", map[string]string{"memory.max": "134217728", "memory/memory.limit_in_bytes": "67108864"}, "", 120795955, 134217728},
		{"no cgroup files", nil, "", 0, 0},
		{"garbage", map[string]string{"memory.max": "lots"}, "", 0, 0},
		{"zero", map[string]string{"memory.max": "0"}, "", 0, 0},
		{"GOMEMLIMIT set", map[string]string{"memory.max": "134217728"}, "100MiB", 0, 134217728},
		{"GOMEMLIMIT off", map[string]string{"memory.max": "134217728"}, "off", 0, 134217728},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				path := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			getenv := func(name string) string {
				if name == "GOMEMLIMIT" {
					return tt.gomemlim
				}
				return ""
			}
			if got := memoryLimit(getenv, root); got != tt.want {
				t.Errorf("memoryLimit = %d, want %d", got, tt.want)
			}
			if got, ok := containerMemoryLimit(root); got != tt.wantLimit || ok != (tt.wantLimit > 0) {
				t.Errorf("containerMemoryLimit = %d, %v, want %d", got, ok, tt.wantLimit)
			}
		})
	}
}

// TestStartedLogsTheMemoryLimit: the "started" line gives the runtime's soft
// memory limit when one is set, so that an operator sees what the sidecar
// took from the container.
func TestStartedLogsTheMemoryLimit(t *testing.T) {
	const limit = 1 << 40 // far above this process's heap: no collection changes
	old := debug.SetMemoryLimit(limit)
	defer debug.SetMemoryLimit(old)
	idp := newTestIDP(t)
	cs := "Endpoint=https://unit.service.signalr.net;AccessKey=" + testAccessKey + ";Version=1.0;"
	r := startRun(t, map[string]string{"AzureSignalRConnectionString": cs}, "--upstream", "http://127.0.0.1:9", "--issuer", idp.URL, "--audience", "api://app")
	sc := bufio.NewScanner(strings.NewReader(r.logs.String()))
	for sc.Scan() {
		var line struct {
			Msg   string
			Limit int64 `json:"memory_limit_bytes"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "started" {
			if line.Limit != limit {
				t.Errorf("memory_limit_bytes = %d, want %d", line.Limit, limit)
			}
			return
		}
	}
	t.Fatalf("no started line:\n%s", r.logs)
}
