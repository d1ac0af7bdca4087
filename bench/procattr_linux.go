package main

import "syscall"

// childProcAttr puts a child in its own process group and has the kernel
// SIGKILL it if the harness dies (e.g. is itself SIGKILLed) before cleanup.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
