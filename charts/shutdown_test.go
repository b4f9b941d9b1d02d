package charts

import (
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chartutil"
	corev1 "k8s.io/api/core/v1"
)

// sidecarShutdownDefaults are the sidecar's own defaults for --shutdown-delay and --shutdown-timeout, which
// the chart counts with when the values leave them empty. TestChartShutdownDefaultsMatchTheSidecar checks
// them against the binary.
var sidecarShutdownDefaults = map[string]time.Duration{"shutdown-delay": 5 * time.Second, "shutdown-timeout": 15 * time.Second}

// shutdownSeconds is the sidecar's shutdown delay and timeout as the values give them, in whole seconds
// rounded up: sidecar.shutdownDelay/shutdownTimeout, else the configuration file's keys, else the defaults.
func shutdownSeconds(t *testing.T, v chartutil.Values) (delay, timeout int) {
	t.Helper()
	cfg, _ := v["config"].(map[string]any)
	seconds := func(value, key, flag string) int {
		s := str(t, v, value)
		if s == "" {
			s, _ = cfg[key].(string)
		}
		d := sidecarShutdownDefaults[flag]
		if s != "" {
			var err error
			if d, err = time.ParseDuration(s); err != nil {
				t.Fatalf("%s %q: %v", value, s, err)
			}
		}
		return int(math.Ceil(d.Seconds()))
	}
	return seconds("sidecar.shutdownDelay", "shutdown_delay", "shutdown-delay"), seconds("sidecar.shutdownTimeout", "shutdown_timeout", "shutdown-timeout")
}

// preStopSleep returns N of the Functions container's `/bin/sh -c "sleep N"` preStop hook, or -1 without one.
func preStopSleep(t *testing.T, app *corev1.Container) int {
	t.Helper()
	if app.Lifecycle == nil || app.Lifecycle.PreStop == nil || app.Lifecycle.PreStop.Exec == nil {
		return -1
	}
	cmd := app.Lifecycle.PreStop.Exec.Command
	if len(cmd) != 3 || cmd[0] != "/bin/sh" || cmd[1] != "-c" || !strings.HasPrefix(cmd[2], "sleep ") {
		t.Fatalf("preStop %q, want /bin/sh -c \"sleep N\"", cmd)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(cmd[2], "sleep "))
	if err != nil {
		t.Fatalf("preStop %q: %v", cmd, err)
	}
	return n
}

// checkShutdown checks the pod's shutdown against the values: the sidecar's flags, a termination grace
// period that leaves the sidecar its delay and timeout, and a Functions container that outlives what the
// sidecar still forwards to it.
func checkShutdown(t *testing.T, pod corev1.PodSpec, sidecar, app *corev1.Container, v chartutil.Values) {
	t.Helper()
	for value, flag := range map[string]string{"sidecar.shutdownDelay": "--shutdown-delay=", "sidecar.shutdownTimeout": "--shutdown-timeout="} {
		s := str(t, v, value)
		if got := slices.Contains(sidecar.Args, flag+s); got != (s != "") {
			t.Errorf("sidecar args %q: %s%s passed: %v, want %v", sidecar.Args, flag, s, got, s != "")
		}
	}
	if value(t, v, "sidecar.maxConnections") != nil {
		if n := integer(t, v, "sidecar.maxConnections"); !slices.Contains(sidecar.Args, fmt.Sprintf("--max-connections=%d", n)) {
			t.Errorf("sidecar args %q lack --max-connections=%d", sidecar.Args, n)
		}
	} else if slices.ContainsFunc(sidecar.Args, func(a string) bool { return strings.HasPrefix(a, "--max-connections") }) {
		t.Errorf("sidecar args %q pass --max-connections without sidecar.maxConnections", sidecar.Args)
	}

	delay, timeout := shutdownSeconds(t, v)
	native := boolean(t, v, "nativeSidecar")
	need := delay + timeout
	if native {
		need += delay
	}
	if pod.TerminationGracePeriodSeconds == nil || int(*pod.TerminationGracePeriodSeconds) < need {
		t.Errorf("terminationGracePeriodSeconds %v, want at least %d (shutdown delay %ds, timeout %ds, native %v)",
			pod.TerminationGracePeriodSeconds, need, delay, timeout, native)
	}

	switch lc := value(t, v, "functions.lifecycle").(type) {
	case nil:
		if app.Lifecycle != nil {
			t.Errorf("functions.lifecycle is null, but the Functions container has %+v", app.Lifecycle)
		}
	case map[string]any:
		if len(lc) > 0 {
			// The user's own lifecycle, as given.
			if app.Lifecycle == nil {
				t.Error("functions.lifecycle is set, but the Functions container has none")
			}
			return
		}
		want := delay + timeout
		if native {
			want = delay
		}
		if got := preStopSleep(t, app); got != want {
			t.Errorf("Functions preStop sleeps %d s, want %d (shutdown delay %ds, timeout %ds, native %v)", got, want, delay, timeout, native)
		}
	}
}

// TestChartShutdownTiming renders the workload with shutdown settings and checks the exact wait of the
// Functions container and the exact termination grace period.
func TestChartShutdownTiming(t *testing.T) {
	base := readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml"))
	cases := []struct {
		name    string
		values  string
		preStop int // -1: no preStop hook
		grace   int
	}{
		{"defaults", "", 20, 30},
		{"native sidecar", "nativeSidecar: true", 5, 35},
		{"no delay", "sidecar:\n  shutdownDelay: 0s", 15, 25},
		{"durations rounded up", "sidecar:\n  shutdownDelay: 1m30s\n  shutdownTimeout: 500ms", 91, 101},
		{"native sidecar with settings", "nativeSidecar: true\nsidecar:\n  shutdownDelay: 10s\n  shutdownTimeout: 1m", 10, 90},
		{"from the configuration file", "config:\n  shutdown_delay: 20s\n  shutdown_timeout: 30s", 50, 60},
		{"values win over the file", "sidecar:\n  shutdownDelay: 1s\nconfig:\n  shutdown_delay: 20s", 16, 26},
		{"grace period given", "terminationGracePeriodSeconds: 120", 20, 120},
		{"grace period given, exactly enough", "terminationGracePeriodSeconds: 20", 20, 20},
		{"no hook", "functions:\n  lifecycle: null", -1, 30},
		{"own hook", "functions:\n  lifecycle:\n    preStop:\n      exec:\n        command: [/bin/sh, -c, sleep 7]", 7, 30},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, chartDir, overlayYAML(t, copyValues(t, base), tc.values))
			o := decode(t, r.manifests)
			v := r.chartValues(t, "")
			pod := o.deployments[0].Spec.Template.Spec
			sidecar, _ := findSidecar(t, pod, str(t, v, "sidecar.name"))
			app := findContainer(t, pod.Containers, str(t, v, "functions.name"))
			if got := preStopSleep(t, app); got != tc.preStop {
				t.Errorf("Functions preStop sleeps %d s, want %d", got, tc.preStop)
			}
			if g := pod.TerminationGracePeriodSeconds; g == nil || int(*g) != tc.grace {
				t.Errorf("terminationGracePeriodSeconds %v, want %d", g, tc.grace)
			}
			checkShutdown(t, pod, sidecar, app, v)
		})
	}
}

// TestChartShutdownDefaultsMatchTheSidecar checks that the defaults the chart counts with when
// sidecar.shutdownDelay and sidecar.shutdownTimeout are empty are the binary's own: rendering with them empty
// gives the same pod as rendering with the defaults --help shows.
func TestChartShutdownDefaultsMatchTheSidecar(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("runs the sidecar's Linux build")
	}
	if testing.Short() {
		t.Skip("builds and runs the sidecar")
	}
	out, _ := exec.Command(buildSidecar(t), "--help").CombinedOutput()
	explicit := map[string]any{}
	for flag, want := range sidecarShutdownDefaults {
		m := regexp.MustCompile(`(?m)^\s+--?` + flag + ` duration\n.*\(default ([^);]+)[);]`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("--help shows no default for -%s:\n%s", flag, out)
		}
		d, err := time.ParseDuration(string(m[1]))
		if err != nil || d != want {
			t.Errorf("the sidecar's -%s defaults to %s; the chart counts with %s", flag, m[1], want)
		}
		explicit[map[string]string{"shutdown-delay": "shutdownDelay", "shutdown-timeout": "shutdownTimeout"}[flag]] = string(m[1])
	}
	for _, native := range []bool{false, true} {
		pod := func(sidecar map[string]any) corev1.PodSpec {
			vals := overlay(readValues(t, filepath.Join(chartDir, "ci", "full-values.yaml")), map[string]any{"nativeSidecar": native, "sidecar": sidecar})
			return decode(t, mustRender(t, chartDir, vals).manifests).deployments[0].Spec.Template.Spec
		}
		empty, given := pod(map[string]any{}), pod(explicit)
		if !reflect.DeepEqual(empty.TerminationGracePeriodSeconds, given.TerminationGracePeriodSeconds) ||
			!reflect.DeepEqual(empty.Containers[0].Lifecycle, given.Containers[0].Lifecycle) {
			t.Errorf("native %v: the pod with the values empty stops otherwise than with %v: grace %v and %v, lifecycle %+v and %+v", native, explicit,
				*empty.TerminationGracePeriodSeconds, *given.TerminationGracePeriodSeconds, empty.Containers[0].Lifecycle, given.Containers[0].Lifecycle)
		}
	}
}
