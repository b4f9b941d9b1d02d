package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memoryLimitShare is the share of the container's memory limit the Go heap
// is asked to stay within (runtime/debug.SetMemoryLimit). The Go collector
// otherwise lets the heap grow to twice what is live before it runs, and a
// burst of connections near the container's limit would end in the kernel
// killing the sidecar, every connection with it, where collecting harder
// would have been enough. The rest is room for what the limit does not
// cover: goroutine stacks of a burst, the runtime's own memory, the binary.
const memoryLimitShare = 0.9

// containerMemoryLimit returns the memory limit, in bytes, of the cgroup
// mounted at root, as a container sees its own: cgroup v2's memory.max, or
// cgroup v1's memory/memory.limit_in_bytes. ok is false when there is none:
// no such file (outside a container, where root is the host's), "max", or
// v1's "unlimited", a number near the largest int64.
func containerMemoryLimit(root string) (limit int64, ok bool) {
	for _, name := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || v <= 0 || v >= 1<<62 {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// memoryLimit returns the soft memory limit main sets for the Go runtime,
// memoryLimitShare of the container's, or 0 to leave the runtime as it is:
// when GOMEMLIMIT is set (the runtime has read it; "off" turns the limit
// off), or when the container has no limit.
func memoryLimit(getenv func(string) string, cgroupRoot string) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit, ok := containerMemoryLimit(cgroupRoot)
	if !ok {
		return 0
	}
	return int64(float64(limit) * memoryLimitShare)
}
