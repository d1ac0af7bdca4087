//go:build !linux

package main

import "syscall"

// childProcAttr has nothing portable to add outside Linux; the harness still
// stops every child it started on exit and on Ctrl-C.
func childProcAttr() *syscall.SysProcAttr { return nil }
