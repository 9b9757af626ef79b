//go:build !linux

package devstack

import (
	"os/exec"
	"syscall"
)

// detach puts the process in its own process group, so that Ctrl-C in the
// terminal reaches the stack, which stops the workloads in order.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
