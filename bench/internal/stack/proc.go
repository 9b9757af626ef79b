package stack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"example.com/rampart/platform/devstack"
)

// Processes returns the process id of each workload, by name: the
// children of this process that run the binaries of the stack.
func (s *Stack) Processes() (map[string]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	pids := map[string]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || filepath.Dir(exe) != s.binDir {
			continue
		}
		if parent, err := parentOf(pid); err != nil || parent != self {
			continue
		}
		pids[filepath.Base(exe)] = pid
	}
	for _, name := range devstack.Workloads {
		if _, ok := pids[name]; !ok {
			return nil, fmt.Errorf("no %s process among this one's children", name)
		}
	}
	return pids, nil
}

// parentOf returns the parent process id of pid, from /proc/PID/stat.
func parentOf(pid int) (int, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields that
	// follow it are state, then the parent's id.
	_, rest, ok := bytes.CutLast(data, []byte(")"))
	if !ok {
		return 0, errors.New("malformed stat")
	}
	fields := strings.Fields(string(rest))
	if len(fields) < 2 {
		return 0, errors.New("malformed stat")
	}
	return strconv.Atoi(fields[1])
}

// RSS returns the resident set size of process pid, in bytes.
func RSS(pid int) (uint64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }() // read only: closing cannot lose data
	return vmRSS(f)
}

// vmRSS reads the VmRSS line of a /proc/PID/status file, which the kernel
// writes in kibibytes.
func vmRSS(r io.Reader) (uint64, error) {
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		rest, ok := strings.CutPrefix(scanner.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", scanner.Text())
		}
		kib, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return kib << 10, nil
	}
	if err := scanner.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line")
}
