package charts

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"go/version"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the repository, the Docker build context.
const repoRoot = ".."

// instruction is one instruction of a Dockerfile, its continuation lines joined.
type instruction struct {
	line    int    // where it starts
	keyword string // upper case, such as RUN
	args    string // the rest of the instruction
}

// stage is one FROM and the instructions under it.
type stage struct {
	from         instruction
	image, name  string
	instructions []instruction
}

// dockerfile is a parsed Dockerfile: the ARGs before the first FROM, then the stages.
type dockerfile struct {
	globalArgs map[string]string
	stages     []stage
}

// parseDockerfile reads a Dockerfile as Docker does, for what these tests need: comments and blank lines
// are dropped (inside continued instructions too), a trailing backslash continues the instruction on the
// next line, and the global ARGs' defaults are substituted in FROM.
func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	df := dockerfile{globalArgs: map[string]string{}}
	var ins []instruction
	var cur *instruction
	for i, raw := range strings.Split(readFile(t, path), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cont := strings.HasSuffix(line, `\`)
		line = strings.TrimSpace(strings.TrimSuffix(line, `\`))
		if cur == nil {
			keyword, rest, _ := strings.Cut(line, " ")
			cur = &instruction{line: i + 1, keyword: strings.ToUpper(keyword), args: strings.TrimSpace(rest)}
		} else {
			cur.args += " " + line
		}
		if !cont {
			ins = append(ins, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("%s: line %d continues past the end of the file", path, cur.line)
	}
	for _, in := range ins {
		switch {
		case in.keyword == "FROM":
			// Docker's automatic platform arguments, as on this machine.
			vars := map[string]string{"BUILDPLATFORM": "linux/" + runtime.GOARCH, "TARGETPLATFORM": "linux/" + runtime.GOARCH}
			maps.Copy(vars, df.globalArgs)
			words := shellWords(t, in.args, vars)
			words = slices.DeleteFunc(words, func(w string) bool { return strings.HasPrefix(w, "--") })
			s := stage{from: in, image: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				s.name = words[2]
			} else if len(words) != 1 {
				t.Fatalf("%s:%d: cannot read FROM %s", path, in.line, in.args)
			}
			df.stages = append(df.stages, s)
		case len(df.stages) == 0:
			if in.keyword != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", path, in.line, in.keyword)
			}
			name, def, _ := strings.Cut(in.args, "=")
			df.globalArgs[name] = def
		default:
			s := &df.stages[len(df.stages)-1]
			s.instructions = append(s.instructions, in)
		}
	}
	return df
}

// shellWords splits a command line into words as a POSIX shell does for a simple command: quotes and
// backslashes are honoured and ${VAR} and $VAR expand from vars, outside single quotes. An unknown variable,
// or a shell operator that would make this more than one simple command, fails the test.
func shellWords(t *testing.T, s string, vars map[string]string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord, single, double := false, false, false
	expand := func(i int) int {
		j, name := i+1, ""
		if j < len(s) && s[j] == '{' {
			end := strings.IndexByte(s[j:], '}')
			if end < 0 {
				t.Fatalf("unclosed ${ in %q", s)
			}
			name, j = s[j+1:j+end], j+end+1
		} else {
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			name = s[i+1 : j]
		}
		val, ok := vars[name]
		if !ok {
			t.Fatalf("variable %q of %q has no value", name, s)
		}
		w.WriteString(val)
		return j
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case single:
			if c == '\'' {
				single = false
			} else {
				w.WriteByte(c)
			}
			i++
		case double:
			switch {
			case c == '"':
				double = false
				i++
			case c == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0:
				w.WriteByte(s[i+1])
				i += 2
			case c == '$':
				i = expand(i)
			default:
				w.WriteByte(c)
				i++
			}
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			i++
		case strings.IndexByte("&|;<>()`", c) >= 0:
			t.Fatalf("%q is more than one simple command (%q)", s, c)
		default:
			inWord = true
			switch c {
			case '\'':
				single = true
				i++
			case '"':
				double = true
				i++
			case '\\':
				if i+1 < len(s) {
					w.WriteByte(s[i+1])
				}
				i += 2
			case '$':
				i = expand(i)
			default:
				w.WriteByte(c)
				i++
			}
		}
	}
	if single || double {
		t.Fatalf("unclosed quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// buildCommand is a RUN instruction read as a simple command: its RUN flags (such as cache mounts), its
// environment assignments and its argument vector.
type buildCommand struct {
	flags []string
	env   []string
	argv  []string
}

func parseRun(t *testing.T, in instruction, vars map[string]string) buildCommand {
	t.Helper()
	var bc buildCommand
	for _, w := range shellWords(t, in.args, vars) {
		switch {
		case len(bc.env) == 0 && len(bc.argv) == 0 && strings.HasPrefix(w, "--"):
			bc.flags = append(bc.flags, w)
		case len(bc.argv) == 0 && strings.Contains(w, "=") && !strings.HasPrefix(w, "-"):
			bc.env = append(bc.env, w)
		default:
			bc.argv = append(bc.argv, w)
		}
	}
	return bc
}

// flagValue returns the value after a flag such as -o or -ldflags.
func flagValue(argv []string, name string) (string, bool) {
	for i, a := range argv {
		if a == name && i+1 < len(argv) {
			return argv[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// stageArgs returns the ARG names declared in a stage.
func stageArgs(s stage) map[string]string {
	args := map[string]string{}
	for _, in := range s.instructions {
		if in.keyword == "ARG" {
			name, def, _ := strings.Cut(in.args, "=")
			args[name] = def
		}
	}
	return args
}

// testVersion is the version the build test injects.
const testVersion = "0.0.0-dockerfile-test"

// buildArgs are the ARG values of a build for this machine.
func buildArgs() map[string]string {
	return map[string]string{"TARGETOS": "linux", "TARGETARCH": runtime.GOARCH, "VERSION": testVersion}
}

// TestDockerfile checks the Dockerfile's structure: modules are downloaded before the sources are copied,
// the binary is built static, stripped and versioned, and the runtime stage is distroless, non-root, with
// the sidecar's ports, OCI labels and the binary as exec-form entrypoint.
func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	if len(df.stages) != 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(df.stages))
	}
	build, final := df.stages[0], df.stages[1]

	// The Go image must be at least the go.mod's go version: the golang images do not fetch toolchains.
	goVersion := ""
	for _, line := range strings.Split(readFile(t, filepath.Join(repoRoot, "go.mod")), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			goVersion = strings.TrimSpace(v)
		}
	}
	if goVersion == "" {
		t.Fatal("go.mod has no go line")
	}
	goImage, ok := strings.CutPrefix(build.image, "golang:")
	if !ok || build.name != "build" {
		t.Fatalf("build stage FROM %s AS %s, want golang:<version> AS build", build.image, build.name)
	}
	goImage, _, _ = strings.Cut(goImage, "-") // golang:1.26.8-bookworm
	if version.Compare("go"+goImage, "go"+goVersion) < 0 {
		t.Errorf("build image golang:%s is older than go.mod's go %s", goImage, goVersion)
	}
	if !strings.Contains(build.from.args, "--platform=$BUILDPLATFORM") {
		t.Errorf("build stage FROM %s does not run on the build platform (--platform=$BUILDPLATFORM)", build.from.args)
	}

	// The order of the build stage: go.mod and go.sum, go mod download, the sources, go build.
	args := stageArgs(build)
	for _, a := range []string{"TARGETOS", "TARGETARCH", "VERSION"} {
		if _, ok := args[a]; !ok {
			t.Errorf("build stage lacks ARG %s", a)
		}
	}
	var steps []string
	var buildRun *buildCommand
	for _, in := range build.instructions {
		switch in.keyword {
		case "COPY":
			steps = append(steps, "COPY "+strings.Join(shellWords(t, in.args, nil), " "))
		case "RUN":
			bc := parseRun(t, in, buildArgs())
			steps = append(steps, "RUN "+strings.Join(bc.argv[:min(3, len(bc.argv))], " "))
			if slices.Equal(bc.argv[:min(2, len(bc.argv))], []string{"go", "build"}) {
				buildRun = &bc
			}
		}
	}
	want := []string{"COPY go.mod go.sum ./", "RUN go mod download", "COPY . .", "RUN go build -trimpath"}
	if !slices.Equal(steps, want) {
		t.Errorf("build stage steps %q, want %q", steps, want)
	}
	if buildRun == nil {
		t.Fatal("no RUN go build")
	}
	for _, e := range []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH} {
		if !slices.Contains(buildRun.env, e) {
			t.Errorf("go build environment %q lacks %s (GOOS and GOARCH come from TARGETOS and TARGETARCH)", buildRun.env, e)
		}
	}
	ldflags, _ := flagValue(buildRun.argv, "-ldflags")
	if !slices.Equal(strings.Fields(ldflags), []string{"-s", "-w", "-X", "main.version=" + testVersion}) {
		t.Errorf("-ldflags %q, want \"-s -w -X main.version=${VERSION}\"", ldflags)
	}
	out, ok := flagValue(buildRun.argv, "-o")
	if !ok || !filepath.IsAbs(out) || buildRun.argv[len(buildRun.argv)-1] != "./cmd/negotiate-sidecar" {
		t.Errorf("go build %q, want -o <absolute path> ... ./cmd/negotiate-sidecar", buildRun.argv)
	}

	// The runtime stage.
	if base, _, _ := strings.Cut(final.image, "@"); base != "gcr.io/distroless/static:nonroot" {
		t.Errorf("runtime stage FROM %s, want gcr.io/distroless/static:nonroot", final.image)
	}
	var user, entrypoint, copied string
	var exposed []string
	labels := map[string]string{}
	for _, in := range final.instructions {
		switch in.keyword {
		case "USER":
			user = in.args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "ENTRYPOINT":
			var argv []string
			if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) != 1 {
				t.Errorf("ENTRYPOINT %s, want the exec form with the binary alone: %v", in.args, err)
				continue
			}
			entrypoint = argv[0]
		case "COPY":
			w := shellWords(t, in.args, nil)
			if len(w) != 3 || w[0] != "--from=build" || w[1] != out {
				t.Errorf("runtime stage COPY %s, want --from=build %s <path>", in.args, out)
				continue
			}
			copied = w[2]
		case "LABEL":
			vars := map[string]string{"VERSION": testVersion, "REVISION": "r"}
			for _, kv := range shellWords(t, in.args, vars) {
				k, v, _ := strings.Cut(kv, "=")
				labels[k] = v
			}
		case "RUN", "ADD", "CMD", "SHELL", "VOLUME", "WORKDIR":
			t.Errorf("runtime stage has %s: it should hold the binary and nothing else", in.keyword)
		}
	}
	if user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", user)
	}
	if copied == "" || entrypoint != copied {
		t.Errorf("ENTRYPOINT %q, want the copied binary %q", entrypoint, copied)
	}
	if !slices.Equal(slices.Sorted(slices.Values(exposed)), []string{"8080", "9090"}) {
		t.Errorf("EXPOSE %q, want 8080 9090, the sidecar's default proxy and admin ports", exposed)
	}
	for _, l := range []string{"title", "description", "source", "version", "revision"} {
		if labels["org.opencontainers.image."+l] == "" {
			t.Errorf("no label org.opencontainers.image.%s", l)
		}
	}
	if labels["org.opencontainers.image.version"] != testVersion {
		t.Errorf("org.opencontainers.image.version %q, want the VERSION build argument", labels["org.opencontainers.image.version"])
	}

	// The chart runs the image as the same user on the same ports.
	values := readValues(t, filepath.Join(chartDir, "values.yaml"))
	sidecar := values["sidecar"].(map[string]any)
	sc := sidecar["securityContext"].(map[string]any)
	if got := fmt.Sprintf("%v:%v", sc["runAsUser"], sc["runAsGroup"]); got != user {
		t.Errorf("the chart runs the sidecar as %s, the image as %s", got, user)
	}
	if got := fmt.Sprintf("%v %v", sidecar["port"], sidecar["adminPort"]); got != "8080 9090" {
		t.Errorf("the chart's sidecar ports are %s, the image exposes 8080 9090", got)
	}
}

// TestDockerfileBuild runs the build stage of the Dockerfile without Docker: its COPY instructions copy
// from the build context as .dockerignore filters it, and its RUN commands run as written, with the
// TARGETOS, TARGETARCH and VERSION arguments of a build for this machine. The binary must be static and
// stripped, carry the build settings, and print the injected version.
func TestDockerfileBuild(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image's binary is a Linux binary")
	}
	if testing.Short() {
		t.Skip("builds the sidecar")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	df := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	build := df.stages[0]
	ignore := readDockerignore(t, filepath.Join(repoRoot, ".dockerignore"))

	root := t.TempDir() // stands for / of the build stage
	workdir := "/"
	inRoot := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(workdir, p)
		}
		return filepath.Join(root, p)
	}
	var binary string
	for _, in := range build.instructions {
		switch in.keyword {
		case "WORKDIR":
			workdir = filepath.Join(workdir, in.args)
			if err := os.MkdirAll(inRoot("."), 0o755); err != nil {
				t.Fatal(err)
			}
		case "COPY":
			w := shellWords(t, in.args, nil)
			copyContext(t, repoRoot, w[:len(w)-1], inRoot(w[len(w)-1]), ignore)
		case "RUN":
			bc := parseRun(t, in, buildArgs())
			argv := slices.Clone(bc.argv)
			if argv[0] != "go" {
				t.Fatalf("RUN %q: only go commands run here", argv)
			}
			argv[0] = goBin
			if i := slices.Index(argv, "-o"); i >= 0 {
				argv[i+1] = inRoot(argv[i+1])
				binary = argv[i+1]
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir = inRoot(".")
			// The module cache and proxy settings of this machine, then the instruction's own variables.
			cmd.Env = append(os.Environ(), bc.env...)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("RUN %s (line %d): %v\n%s", strings.Join(bc.argv, " "), in.line, err, stderr.String())
			}
		}
	}
	if binary == "" {
		t.Fatal("the build stage builds no binary")
	}

	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (program header %s)", p.Type)
		}
	}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || s.Name == ".dynamic" {
			t.Errorf("the binary has section %s: not static and stripped", s.Name)
		}
	}

	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": runtime.GOARCH} {
		if settings[k] != want {
			t.Errorf("build setting %s=%q, want %q", k, settings[k], want)
		}
	}
	if info.Path != "github.com/negotiate-sidecar/negotiate-sidecar/cmd/negotiate-sidecar" {
		t.Errorf("built %s", info.Path)
	}

	out, err := exec.Command(binary, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", binary, err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "negotiate-sidecar "+testVersion; got != want {
		t.Errorf("version prints %q, want %q", got, want)
	}
}

// readDockerignore reads the exclusion patterns of a .dockerignore file.
func readDockerignore(t *testing.T, path string) []string {
	t.Helper()
	var patterns []string
	for _, line := range strings.Split(readFile(t, path), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("%s: exceptions (%s) are not supported by this test", path, line)
		}
		patterns = append(patterns, strings.Trim(filepath.ToSlash(filepath.Clean(line)), "/"))
	}
	return patterns
}

// ignored says whether a path of the build context (slash-separated, relative) is excluded: a pattern
// matches the path or one of its parent directories, with ** matching any number of directories.
func ignored(rel string, patterns []string) bool {
	parts := strings.Split(rel, "/")
	for _, p := range patterns {
		for n := 1; n <= len(parts); n++ {
			if matchParts(strings.Split(p, "/"), parts[:n]) {
				return true
			}
		}
	}
	return false
}

func matchParts(pattern, parts []string) bool {
	if len(pattern) == 0 {
		return len(parts) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if matchParts(pattern[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	ok, err := filepath.Match(pattern[0], parts[0])
	return err == nil && ok && matchParts(pattern[1:], parts[1:])
}

// copyContext does what COPY does with sources from the build context: "." copies the whole context (less
// what is ignored) into dest; files are copied into the directory dest.
func copyContext(t *testing.T, context string, sources []string, dest string, ignore []string) {
	t.Helper()
	for _, src := range sources {
		if strings.HasPrefix(src, "--") {
			t.Fatalf("COPY %s from the build context: flags are not supported by this test", src)
		}
		base := filepath.Join(context, src)
		err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(context, path)
			if err != nil {
				return err
			}
			if rel != "." && ignored(filepath.ToSlash(rel), ignore) {
				if src != "." {
					return fmt.Errorf("COPY %s: the file is excluded by .dockerignore", src)
				}
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			relSrc, _ := filepath.Rel(base, path)
			target := filepath.Join(dest, relSrc)
			if src != "." {
				target = filepath.Join(dest, filepath.Base(path))
			}
			if d.IsDir() {
				return os.MkdirAll(target, 0o755)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o644)
		})
		if err != nil {
			t.Fatalf("COPY %s: %v", src, err)
		}
	}
}
