// Command etcd is a minimal wrapper around etcd's own entry point, so that
// the etcd server can be built from the go.etcd.io/etcd/server/v3 module
// (the repository's root module, which holds the upstream main package,
// carries replace directives and cannot be built as a dependency).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
