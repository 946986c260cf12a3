// Command conformance judges what this project hands to Talos with Talos's own code at the pinned
// version: imager profiles (pkg/imager/profile), machine-config patches (configpatcher, the
// config bundle `talosctl gen config` builds, validation in metal mode) and Image Factory
// schematic IDs (image-factory pkg/schematic).
//
// It is test-only. It reads one JSON request (a file named as the only argument, or stdin) and
// writes one JSON report on stdout; it exits non-zero only when the request cannot be read. What
// counts as a failure is decided by the caller (xtask/inspect/src/conformance.rs), from the facts
// reported here. docs/conformance.md describes the request and the report.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/imager/profile"
	"github.com/siderolabs/talos/pkg/images"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/bundle"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/merge"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/version"
	"go.yaml.in/yaml/v4"
)

// Request is what the caller asks to be judged.
type Request struct {
	Profiles   []ProfileRequest   `json:"profiles"`
	Configs    []ConfigRequest    `json:"configs"`
	Schematics []SchematicRequest `json:"schematics"`
	// Commands are talosctl command lines (without the program name) to check against
	// talosctl's own command and flag definitions (its `gen` commands; see talosctl.go).
	Commands []CommandRequest `json:"commands"`
}

// CommandRequest is one talosctl command line.
type CommandRequest struct {
	Name string   `json:"name"`
	Argv []string `json:"argv"`
}

// ProfileRequest is one imager profile, as the imager receives it on stdin.
type ProfileRequest struct {
	Name string `json:"name"`
	YAML string `json:"yaml"`
	// Default is the imager's built-in profile (profile.Default) the output would be built from
	// on the imager's command line; OutputKind overrides its kind (`--output-kind`), Platform
	// its platform (`--platform`); empty: not given.
	Default    string `json:"default"`
	OutputKind string `json:"output_kind"`
	Platform   string `json:"platform"`
}

// ConfigRequest is one `talosctl gen config` run: patches for every machine type, patches for
// control planes only, judged for one machine type.
type ConfigRequest struct {
	Name                string   `json:"name"`
	MachineType         string   `json:"machine_type"`
	Patches             []string `json:"patches"`
	ControlPlanePatches []string `json:"controlplane_patches"`
	// TalosVersion is `talosctl gen config --talos-version` (the config's version contract, e.g.
	// "v1.13": a config generated for that release, as a cluster upgraded from it keeps);
	// empty: this Talos's own.
	TalosVersion string `json:"talos_version"`
}

// SchematicRequest is one schematic and the ID this project computed for it.
type SchematicRequest struct {
	Name string `json:"name"`
	YAML string `json:"yaml"`
	ID   string `json:"id"`
}

// Report is what Talos's code found.
type Report struct {
	TalosVersion string            `json:"talos_version"`
	Profiles     []ProfileReport   `json:"profiles"`
	Configs      []ConfigReport    `json:"configs"`
	Schematics   []SchematicReport `json:"schematics"`
	Commands     []CommandReport   `json:"commands"`
}

// CommandReport is talosctl's verdict on one command line: which command it found, and the
// errors its flag parsing and argument validation report.
type CommandReport struct {
	Name    string   `json:"name"`
	Command string   `json:"command"`
	Errors  []string `json:"errors"`
}

// ProfileReport is the verdict on one profile.
type ProfileReport struct {
	Name   string   `json:"name"`
	Errors []string `json:"errors"`
	// OutputPath is Profile.OutputPath() after defaults are filled; Written adds the suffix the
	// imager's post-processing for output.outFormat appends (pkg/imager post.go): the file in its
	// output directory and tar stream.
	OutputPath string `json:"output_path"`
	Written    string `json:"written"`
	// Differences from the imager's default profile for the same output, both with defaults filled.
	Differences []Difference `json:"differences"`
}

// Difference is one field that differs: its YAML path and both values (null when absent).
type Difference struct {
	Path    string `json:"path"`
	Ours    any    `json:"ours"`
	Default any    `json:"default"`
}

// ConfigReport is the verdict on one generated machine config.
type ConfigReport struct {
	Name     string   `json:"name"`
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
	// Facts about the merged config, read through Talos's own config accessors.
	Modules               []Module `json:"modules"`
	ValidSubnets          []string `json:"valid_subnets"`
	EtcdAdvertisedSubnets []string `json:"etcd_advertised_subnets"`
	// HasClusterEtcd is set when the document carries a `cluster.etcd` section.
	HasClusterEtcd bool   `json:"has_cluster_etcd"`
	InstallImage   string `json:"install_image"`
	// InstallImageFrom is where InstallImage was read, the field Talos's installer takes its
	// image from: installFromUnattended, installFromMachine, or empty when the config has
	// neither (Talos's install task then falls back to its default metal installer).
	InstallImageFrom string   `json:"install_image_from"`
	Documents        []string `json:"documents"`
}

// Where an install image comes from (ConfigReport.InstallImageFrom).
const (
	// installFromMachine is the v1alpha1 document's .machine.install.image, which machined's
	// install task reads when no UnattendedInstallConfig is present.
	installFromMachine = "machine.install.image"
	// installFromUnattended is the UnattendedInstallConfig document's installer.image (Talos
	// 1.14): it takes precedence over .machine.install (cmd/installer install.go), machined then
	// skips its install sequence and the UnattendedInstallController installs this image (an
	// empty one: the Image Factory installer of the boot entry's schematic).
	installFromUnattended = "UnattendedInstallConfig installer.image"
)

// Module is one machine.kernel.modules entry.
type Module struct {
	Name       string   `json:"name"`
	Parameters []string `json:"parameters"`
}

// SchematicReport is image-factory's ID for one schematic.
type SchematicReport struct {
	Name   string   `json:"name"`
	Errors []string `json:"errors"`
	ID     string   `json:"id"`
	Ours   string   `json:"ours"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "conformance: %v\n", err)
		os.Exit(2)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	var input []byte

	var err error

	switch len(args) {
	case 0:
		input, err = io.ReadAll(stdin)
	case 1:
		input, err = os.ReadFile(args[0])
	default:
		return errors.New("usage: conformance [REQUEST.json] (default: the request on stdin)")
	}

	if err != nil {
		return err
	}

	var req Request

	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()

	if err = dec.Decode(&req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}

	report := Report{
		TalosVersion: version.Tag,
		Profiles:     []ProfileReport{},
		Configs:      []ConfigReport{},
		Schematics:   []SchematicReport{},
		Commands:     []CommandReport{},
	}

	for _, p := range req.Profiles {
		report.Profiles = append(report.Profiles, judgeProfile(p))
	}

	if len(req.Configs) > 0 {
		secretsBundle, err := secrets.NewBundle(secrets.NewClock(), nil)
		if err != nil {
			return fmt.Errorf("generating secrets: %w", err)
		}

		for _, c := range req.Configs {
			report.Configs = append(report.Configs, judgeConfig(c, secretsBundle))
		}
	}

	for _, s := range req.Schematics {
		report.Schematics = append(report.Schematics, judgeSchematic(s))
	}

	for _, c := range req.Commands {
		report.Commands = append(report.Commands, judgeCommand(c))
	}

	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")

	return enc.Encode(report)
}

// judgeProfile decodes the profile strictly (the imager itself does not reject unknown fields),
// completes it as the imager does before building (pkg/imager: name, version, input and output
// defaults), validates it and compares it with the imager's own default for that output.
func judgeProfile(req ProfileRequest) ProfileReport {
	rep := ProfileReport{Name: req.Name, Errors: []string{}, Differences: []Difference{}}

	var prof profile.Profile

	dec := yaml.NewDecoder(strings.NewReader(req.YAML))
	dec.KnownFields(true)

	if err := dec.Decode(&prof); err != nil {
		rep.Errors = append(rep.Errors, "decoding (unknown fields rejected): "+err.Error())

		return rep
	}

	if prof.BaseProfileName != "" {
		rep.Errors = append(rep.Errors, "baseProfileName is set: the profile should be complete on its own")
	}

	complete(&prof)

	if err := prof.Validate(); err != nil {
		rep.Errors = append(rep.Errors, "Validate(): "+err.Error())

		return rep
	}

	rep.OutputPath = prof.OutputPath()
	rep.Written = rep.OutputPath + compressionSuffix(prof.Output.OutFormat)

	def, err := imagerDefault(req, &prof)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())

		return rep
	}

	ours, err := asTree(&prof)
	if err == nil {
		var theirs any

		theirs, err = asTree(def)
		if err == nil {
			diff("", ours, theirs, &rep.Differences)
		}
	}

	if err != nil {
		rep.Errors = append(rep.Errors, "comparing with the default profile: "+err.Error())
	}

	return rep
}

func compressionSuffix(f profile.OutFormat) string {
	if f == profile.OutFormatRaw || f == profile.OutFormatUnknown {
		return ""
	}

	return f.String()
}

// complete fills what the imager fills before it validates (pkg/imager handleProf).
func complete(p *profile.Profile) {
	if p.Name == "" {
		p.Name = version.Name
	}

	if p.Version == "" {
		p.Version = version.Tag
	}

	p.Input.FillDefaults(p.Arch, p.Version, p.SecureBootEnabled())
	p.Output.FillDefaults(p.Arch, p.Version, p.SecureBootEnabled())
}

// imagerDefault is the profile the imager would build from `imager <default> --arch <arch>
// [--platform <platform>] [--output-kind <kind>] --system-extension-image <each of ours>
// [--overlay-name <ours> --overlay-image <ours> --overlay-option <ours>]` (cmd/installer imager
// root command: the overlay image is also its overlay installer), merged onto its base profile
// and completed.
func imagerDefault(req ProfileRequest, ours *profile.Profile) (*profile.Profile, error) {
	base, ok := profile.Default[req.Default]
	if !ok {
		return nil, fmt.Errorf("the imager has no built-in profile %q", req.Default)
	}

	flags := profile.Profile{
		Arch:     ours.Arch,
		Platform: req.Platform,
		Version:  ours.Version,
	}
	flags.Input.SystemExtensions = ours.Input.SystemExtensions

	if ours.Overlay != nil {
		overlay := *ours.Overlay
		flags.Overlay = &overlay
		flags.Input.OverlayInstaller.ImageRef = ours.Overlay.Image.ImageRef
	}

	if req.OutputKind != "" {
		kind, err := profile.OutputKindString(req.OutputKind)
		if err != nil {
			return nil, fmt.Errorf("output kind %q: %w", req.OutputKind, err)
		}

		flags.Output.Kind = kind
	}

	def := base.DeepCopy()
	if err := merge.Merge(&def, &flags); err != nil {
		return nil, fmt.Errorf("merging onto the default profile %q: %w", req.Default, err)
	}

	complete(&def)

	if err := def.Validate(); err != nil {
		return nil, fmt.Errorf("the imager's default profile %q: Validate(): %w", req.Default, err)
	}

	return &def, nil
}

// asTree is the profile as the imager dumps it (YAML), read back as plain maps and lists.
func asTree(p *profile.Profile) (any, error) {
	var buf bytes.Buffer
	if err := p.Dump(&buf); err != nil {
		return nil, err
	}

	var tree any
	if err := yaml.Unmarshal(buf.Bytes(), &tree); err != nil {
		return nil, err
	}

	return tree, nil
}

func diff(path string, ours, theirs any, out *[]Difference) {
	om, ok1 := ours.(map[string]any)
	tm, ok2 := theirs.(map[string]any)

	if ok1 && ok2 {
		keys := map[string]struct{}{}
		for k := range om {
			keys[k] = struct{}{}
		}

		for k := range tm {
			keys[k] = struct{}{}
		}

		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}

		sort.Strings(sorted)

		for _, k := range sorted {
			p := k
			if path != "" {
				p = path + "." + k
			}

			diff(p, om[k], tm[k], out)
		}

		return
	}

	if !reflect.DeepEqual(ours, theirs) {
		*out = append(*out, Difference{Path: path, Ours: ours, Default: theirs})
	}
}

// judgeConfig runs what `talosctl gen config --with-secrets ... --config-patch ...
// --config-patch-control-plane ...` runs (pkg/machinery/config/bundle with configpatcher
// patches), then validates the result for metal as `talosctl validate --mode metal` does.
func judgeConfig(req ConfigRequest, secretsBundle *secrets.Bundle) ConfigReport {
	rep := ConfigReport{
		Name: req.Name, Errors: []string{}, Warnings: []string{}, Modules: []Module{},
		ValidSubnets: []string{}, EtcdAdvertisedSubnets: []string{}, Documents: []string{},
	}

	machineType, err := machine.ParseType(req.MachineType)
	if err != nil || (machineType != machine.TypeWorker && machineType != machine.TypeControlPlane) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("machine type %q: want worker or controlplane", req.MachineType))

		return rep
	}

	patches, err := configpatcher.LoadPatches(req.Patches)
	if err != nil {
		rep.Errors = append(rep.Errors, "loading --config-patch: "+err.Error())

		return rep
	}

	cpPatches, err := configpatcher.LoadPatches(req.ControlPlanePatches)
	if err != nil {
		rep.Errors = append(rep.Errors, "loading --config-patch-control-plane: "+err.Error())

		return rep
	}

	// talosctl gen config's defaults for --install-disk and --install-image.
	genOptions := []generate.Option{
		generate.WithSecretsBundle(secretsBundle),
		generate.WithInstallDisk("/dev/sda"),
		generate.WithInstallImage(images.DefaultInstallerImageRepository + ":" + version.Tag),
	}

	if req.TalosVersion != "" {
		contract, err := config.ParseContractFromVersion(req.TalosVersion)
		if err != nil {
			rep.Errors = append(rep.Errors, "--talos-version: "+err.Error())

			return rep
		}

		genOptions = append(genOptions, generate.WithVersionContract(contract))
	}

	configBundle, err := bundle.NewBundle(
		bundle.WithVerbose(false),
		bundle.WithInputOptions(&bundle.InputOptions{
			ClusterName: "conformance",
			Endpoint:    "https://192.0.2.10:6443",
			KubeVersion: constants.DefaultKubernetesVersion,
			GenOptions:  genOptions,
		}),
		bundle.WithPatch(patches),
		bundle.WithPatchControlPlane(cpPatches),
	)
	if err != nil {
		rep.Errors = append(rep.Errors, "generating the config with the patches: "+err.Error())

		return rep
	}

	cfg := configBundle.Worker()
	if machineType == machine.TypeControlPlane {
		cfg = configBundle.ControlPlane()
	}

	warnings, err := cfg.Validate(metal{}, validation.WithLocal())
	rep.Warnings = append(rep.Warnings, warnings...)

	if err != nil {
		rep.Errors = append(rep.Errors, "validating for metal: "+err.Error())
	}

	for _, doc := range cfg.Documents() {
		rep.Documents = append(rep.Documents, doc.Kind())
	}

	if mc := cfg.RawV1Alpha1(); mc != nil {
		if mc.MachineConfig != nil && mc.MachineConfig.MachineInstall != nil { //nolint:staticcheck // deprecated from Talos 1.14, read on purpose
			rep.InstallImage = mc.MachineConfig.MachineInstall.InstallImage //nolint:staticcheck // as above
			rep.InstallImageFrom = installFromMachine
		}

		rep.HasClusterEtcd = mc.ClusterConfig != nil && mc.ClusterConfig.EtcdConfig != nil
	}

	// From Talos 1.14 an UnattendedInstallConfig document drives the install and takes precedence
	// over .machine.install (cmd/installer install.go, the machined install sequence, the
	// UnattendedInstallController); Talos 1.13 has no such accessor.
	if image := call(reflect.ValueOf(cfg), "UnattendedInstallConfig", "InstallerImage"); image.IsValid() {
		rep.InstallImage = image.String()
		rep.InstallImageFrom = installFromUnattended
	}

	rep.Modules = kernelModules(cfg)

	// Talos 1.14: Config.K8sNodeConfig() (a KubeNodeConfig document, else .machine.kubelet);
	// Talos 1.13: Config.Machine().Kubelet().
	subnets := call(reflect.ValueOf(cfg), "K8sNodeConfig", "NodeIP", "ValidSubnets")
	if !subnets.IsValid() {
		subnets = call(reflect.ValueOf(cfg), "Machine", "Kubelet", "NodeIP", "ValidSubnets")
	}

	if subnets.IsValid() {
		rep.ValidSubnets = orEmpty(subnets.Interface().([]string))
	}

	if cfg.Cluster() != nil {
		rep.EtcdAdvertisedSubnets = orEmpty(cfg.Cluster().Etcd().AdvertisedSubnets())
	}

	if _, err = cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled)); err != nil {
		rep.Errors = append(rep.Errors, "encoding the merged config: "+err.Error())
	}

	return rep
}

// kernelModules are the modules Talos loads: Config.KernelModuleConfigs() from Talos 1.14
// (.machine.kernel.modules and KernelModuleConfig documents), Config.Machine().Kernel().Modules()
// before.
func kernelModules(cfg config.Provider) []Module {
	modules := []Module{}

	list := call(reflect.ValueOf(cfg), "KernelModuleConfigs")
	if !list.IsValid() {
		list = call(reflect.ValueOf(cfg), "Machine", "Kernel", "Modules")
	}

	if !list.IsValid() {
		return modules
	}

	for i := range list.Len() {
		m := list.Index(i).Interface().(interface {
			Name() string
			Parameters() []string
		})
		modules = append(modules, Module{Name: m.Name(), Parameters: orEmpty(m.Parameters())})
	}

	return modules
}

// call follows a chain of no-argument accessors by name, so that one main.go builds against
// Talos 1.13 (go.mod) and 1.14 (go.next.mod), where some config accessors moved from
// Config.Machine() to Config itself. It returns the zero Value when a method does not exist on
// this Talos version or a step returns nil.
func call(v reflect.Value, methods ...string) reflect.Value {
	for _, name := range methods {
		if !v.IsValid() || ((v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) && v.IsNil()) {
			return reflect.Value{}
		}

		method := v.MethodByName(name)
		if !method.IsValid() || method.Type().NumIn() != 0 || method.Type().NumOut() != 1 {
			return reflect.Value{}
		}

		v = method.Call(nil)[0]
	}

	if (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) && v.IsNil() {
		return reflect.Value{}
	}

	return v
}

// metal is the runtime mode `talosctl validate --mode metal` passes (Talos's own mode type is
// internal to the talos module): an installed machine, not in a container.
type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }

// judgeSchematic reads the schematic with the factory's own (strict) parser and computes its ID.
func judgeSchematic(req SchematicRequest) SchematicReport {
	rep := SchematicReport{Name: req.Name, Errors: []string{}, Ours: req.ID}

	s, err := schematic.Unmarshal([]byte(req.YAML))
	if err != nil {
		rep.Errors = append(rep.Errors, "schematic.Unmarshal: "+err.Error())

		return rep
	}

	rep.ID, err = s.ID()
	if err != nil {
		rep.Errors = append(rep.Errors, "ID(): "+err.Error())
	}

	return rep
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}

	return s
}
