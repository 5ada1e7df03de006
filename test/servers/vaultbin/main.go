// Command vault is HashiCorp Vault v1.13.0 (MPL-2.0), built from its Go
// module for the tests of dsv's vault backend. It lives in its own module so
// that Vault's dependencies never enter dsv's go.mod. Build it with
// test/vault-build.sh, which caches the binary outside the repository.
//
// The go:debug line keeps Vault starting under Go >= 1.23: a CA certificate
// bundled by one of its dependencies (gosnowflake, parsed in an init func)
// has a negative serial number, which the newer x509 parser rejects with a
// panic before main runs.

//go:debug x509negativeserial=1
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
