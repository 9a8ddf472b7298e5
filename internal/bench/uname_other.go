//go:build !unix

package bench

func unameRelease() string { return "" }
