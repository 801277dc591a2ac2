// Command helm-render renders a Helm chart with Helm's own template engine
// (helm.sh/helm/v3: chart loader, values coalescing, engine), the way
// `helm template` does, without a cluster and without the helm CLI.
//
// Usage: helm-render [--release NAME] [--namespace NS] [--values FILE]...
//
//	[--set key=value]... [--include-crds] CHART_DIR
//
// The rendered manifests go to stdout as one multi-document YAML stream,
// sorted by template path; NOTES.txt is printed to stderr. The chart's crds/
// files are not included (like `helm template` without --include-crds).
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/getter"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	release := flag.String("release", "sluice", "release name")
	namespace := flag.String("namespace", "sluice-system", "release namespace")
	includeCRDs := flag.Bool("include-crds", false, "also print the chart's crds/ files first")
	var sets, files list
	flag.Var(&sets, "set", "set a value (key=value), may repeat")
	flag.Var(&files, "values", "a values file, may repeat")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [--release NAME] [--namespace NS] [--values FILE]... [--set k=v]... CHART_DIR")
		os.Exit(2)
	}
	if err := render(flag.Arg(0), *release, *namespace, *includeCRDs, files, sets); err != nil {
		fmt.Fprintf(os.Stderr, "helm-render: %v\n", err)
		os.Exit(1)
	}
}

func render(dir, release, namespace string, includeCRDs bool, files, sets []string) error {
	chrt, err := loader.Load(dir)
	if err != nil {
		return fmt.Errorf("loading chart %s: %w", dir, err)
	}
	opts := values.Options{ValueFiles: files, Values: sets}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		return fmt.Errorf("reading values: %w", err)
	}
	options := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	top, err := chartutil.ToRenderValues(chrt, vals, options, chartutil.DefaultCapabilities)
	if err != nil {
		return fmt.Errorf("computing values: %w", err)
	}
	out, err := engine.Render(chrt, top)
	if err != nil {
		return fmt.Errorf("rendering: %w", err)
	}
	var b strings.Builder
	if includeCRDs {
		for _, crd := range chrt.CRDObjects() {
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", crd.Filename, strings.TrimSpace(string(crd.File.Data)))
		}
	}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		body := strings.TrimSpace(out[name])
		switch {
		case body == "":
		case strings.HasSuffix(name, "NOTES.txt"):
			fmt.Fprintf(os.Stderr, "%s\n", body)
		case strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"):
			fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, body)
		}
	}
	_, err = os.Stdout.WriteString(b.String())
	return err
}
