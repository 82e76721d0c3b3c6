// helm-render renders a Helm 3 chart the way `helm template` does, for machines without a helm binary.
// It is Go's text/template plus sprig (the engine Helm uses) and the parts Helm adds that helm/kubedr uses:
// include, tpl, required, fail, toYaml/fromYaml, lookup (empty, as in `helm template`), .Values (values.yaml deep-merged
// with -f files and --set), .Release, .Chart, .Capabilities, .Files.Get, .Template; partials in files named _*;
// output as `---` separated documents with `# Source:` comments, in Helm's install order.
//
// --no-hooks leaves out the hooks (documents annotated helm.sh/hook), as `helm template --no-hooks`: what `helm install`
// applies, since Helm runs a hook only at its event (this chart's only one is pre-delete).
//
//	helm-render [--name NAME] [--namespace NS] [-f values.yaml]... [--set a.b=c]... [--include-crds] [--no-hooks] CHART_DIR
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	name := flag.String("name", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	includeCrds := flag.Bool("include-crds", false, "also print the chart's crds/ files")
	noHooks := flag.Bool("no-hooks", false, "leave out the hooks (documents annotated helm.sh/hook)")
	kubeVersion := flag.String("kube-version", "v1.20.0", "Kubernetes version for .Capabilities.KubeVersion")
	var valueFiles, sets, apiVersions multi
	flag.Var(&valueFiles, "f", "values file (repeatable; later wins)")
	flag.Var(&valueFiles, "values", "values file (repeatable; later wins)")
	flag.Var(&sets, "set", "a.b=c (repeatable; comma-separated pairs allowed)")
	flag.Var(&apiVersions, "api-versions", "API version for .Capabilities.APIVersions.Has (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [flags] CHART_DIR")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), *name, *namespace, valueFiles, sets, apiVersions, *kubeVersion, *includeCrds, *noHooks)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

// files is .Files: the chart's files outside templates/, read by path relative to the chart root.
type files map[string][]byte

func (f files) Get(name string) string      { return string(f[name]) }
func (f files) GetBytes(name string) []byte { return f[name] }

// versionSet is .Capabilities.APIVersions.
type versionSet []string

func (v versionSet) Has(s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}

func render(chartDir, name, namespace string, valueFiles, sets, apiVersions []string, kubeVersion string, includeCrds, noHooks bool) (string, error) {
	chartMeta := map[string]interface{}{}
	if err := readYaml(filepath.Join(chartDir, "Chart.yaml"), &chartMeta); err != nil {
		return "", err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return "", fmt.Errorf("Chart.yaml has no name")
	}

	values := map[string]interface{}{}
	if err := readYaml(filepath.Join(chartDir, "values.yaml"), &values); err != nil && !os.IsNotExist(err) {
		return "", err
	}
	for _, f := range valueFiles {
		override := map[string]interface{}{}
		if err := readYaml(f, &override); err != nil {
			return "", err
		}
		values = mergeValues(values, override)
	}
	for _, s := range sets {
		if err := setValue(values, s); err != nil {
			return "", err
		}
	}

	// Every file of the chart: templates/ are parsed, the rest are .Files (as in Helm, minus .helmignore, which this chart does not need).
	fileMap := files{}
	var templateNames []string
	root := template.New(chartName)
	// Functions must be known before parsing; include and tpl reach the other templates through root.
	root.Funcs(funcMap(root)).Option("missingkey=default")
	err := filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		data, err := ioutil.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			tname := chartName + "/" + rel
			if _, err := root.New(tname).Parse(string(data)); err != nil {
				return err
			}
			templateNames = append(templateNames, tname)
			return nil
		}
		fileMap[rel] = data
		return nil
	})
	if err != nil {
		return "", err
	}

	major, minor := "1", "20"
	if parts := strings.SplitN(strings.TrimPrefix(kubeVersion, "v"), ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": chartObject(chartMeta),
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": kubeVersion, "GitVersion": kubeVersion, "Major": major, "Minor": minor},
			"APIVersions": versionSet(apiVersions),
			"HelmVersion": map[string]interface{}{"Version": "v3.0.0-helm-render"},
		},
		"Files": fileMap,
	}

	type doc struct {
		source, body, kind string
		order              int
	}
	var docs []doc
	sort.Strings(templateNames)
	for _, tname := range templateNames {
		base := path.Base(tname)
		// Helm renders partials only through include, and prints NOTES.txt only after an install.
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		data := copyMap(top)
		data["Template"] = map[string]interface{}{"Name": tname, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		for _, part := range splitDocs(text) {
			var head struct {
				Kind     string
				Metadata struct{ Annotations map[string]string }
			}
			if err := yaml.Unmarshal([]byte(part), &head); err != nil {
				return "", fmt.Errorf("%s: rendered YAML does not parse: %v\n%s", tname, err, part)
			}
			if _, hook := head.Metadata.Annotations["helm.sh/hook"]; hook && noHooks {
				continue
			}
			docs = append(docs, doc{source: tname, body: part, kind: head.Kind, order: installOrder(head.Kind)})
		}
	}
	sort.SliceStable(docs, func(i, j int) bool { return docs[i].order < docs[j].order })

	var out strings.Builder
	if includeCrds {
		var crds []string
		for rel := range fileMap {
			if strings.HasPrefix(rel, "crds/") && (strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".yml")) {
				crds = append(crds, rel)
			}
		}
		sort.Strings(crds)
		for _, rel := range crds {
			for _, part := range splitDocs(string(fileMap[rel])) {
				fmt.Fprintf(&out, "---\n# Source: %s/%s\n%s\n", chartName, rel, part)
			}
		}
	}
	for _, d := range docs {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", d.source, d.body)
	}
	return out.String(), nil
}

// funcMap is sprig's text functions minus the environment readers (as in Helm), plus what Helm adds.
func funcMap(root *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			return "" // Helm swallows the error the same way
		}
		return strings.TrimSuffix(string(b), "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
			return m
		}
		return normalize(m).(map[string]interface{})
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", fmt.Errorf(msg) }
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	return f
}

// splitDocs splits rendered text at `---` lines and drops documents that hold only whitespace and comments.
func splitDocs(text string) []string {
	var parts []string
	var cur []string
	flush := func() {
		body := strings.TrimSpace(strings.Join(cur, "\n"))
		cur = nil
		meaningful := false
		for _, l := range strings.Split(body, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				meaningful = true
			}
		}
		if meaningful {
			parts = append(parts, body)
		}
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimRight(l, " \t") == "---" {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return parts
}

// installOrder is Helm's kind order (pkg/releaseutil InstallOrder), shortened to the kinds charts commonly hold.
func installOrder(kind string) int {
	order := []string{"Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy", "PodDisruptionBudget",
		"ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
		"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role",
		"RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet",
		"Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService"}
	for i, k := range order {
		if k == kind {
			return i
		}
	}
	return len(order) // unknown kinds (custom resources) last, as in Helm
}

func readYaml(file string, into *map[string]interface{}) error {
	data, err := ioutil.ReadFile(file)
	if err != nil {
		return err
	}
	raw := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	*into = normalize(raw).(map[string]interface{})
	return nil
}

// normalize turns yaml.v2's map[interface{}]interface{} into map[string]interface{}, which sprig's dict functions expect.
func normalize(v interface{}) interface{} {
	switch x := v.(type) {
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, val := range x {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case map[string]interface{}:
		for k, val := range x {
			x[k] = normalize(val)
		}
		return x
	case []interface{}:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	}
	return v
}

// mergeValues deep-merges override into base as Helm does: maps merge key by key, anything else replaces, null deletes.
func mergeValues(base, override map[string]interface{}) map[string]interface{} {
	for k, v := range override {
		if v == nil {
			delete(base, k)
			continue
		}
		if om, ok := v.(map[string]interface{}); ok {
			if bm, ok := base[k].(map[string]interface{}); ok {
				base[k] = mergeValues(bm, om)
				continue
			}
		}
		base[k] = v
	}
	return base
}

// setValue applies `a.b=c[,d=e]` like helm --set for scalar values: true/false become booleans, integers numbers, null deletes.
// Lists (`{a,b}`) and indexes (`a[0]`) are not supported; use a -f file for those.
func setValue(values map[string]interface{}, expr string) error {
	for _, pair := range strings.Split(expr, ",") {
		eq := strings.Index(pair, "=")
		if eq < 1 {
			return fmt.Errorf("--set %q: want key=value", pair)
		}
		keys := strings.Split(pair[:eq], ".")
		raw := pair[eq+1:]
		var v interface{} = raw
		switch {
		case raw == "true":
			v = true
		case raw == "false":
			v = false
		case raw == "null":
			v = nil
		default:
			if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
				v = n
			}
		}
		m := values
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[k] = next
			}
			m = next
		}
		last := keys[len(keys)-1]
		if v == nil {
			delete(m, last)
		} else {
			m[last] = v
		}
	}
	return nil
}

// chartObject is .Chart: Chart.yaml's fields under Helm's Go field names (name -> Name, appVersion -> AppVersion, ...).
func chartObject(meta map[string]interface{}) map[string]interface{} {
	special := map[string]string{"apiVersion": "APIVersion", "kubeVersion": "KubeVersion", "appVersion": "AppVersion"}
	out := map[string]interface{}{}
	for k, v := range meta {
		key := special[k]
		if key == "" && k != "" {
			key = strings.ToUpper(k[:1]) + k[1:]
		}
		out[key] = v
	}
	return out
}

func copyMap(m map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}
