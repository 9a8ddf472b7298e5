//go:build !unix

package main

func pidAlive(pid int) bool { return false }
