package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// PathRules holds the glob lists for each kind of path access.
type PathRules struct {
	Read  []string `json:"read"`
	Write []string `json:"write"`
	Exec  []string `json:"exec"`
}

// Policy is what a jailed program may do. See README.md for the format.
type Policy struct {
	AllowedSyscalls  []string          `json:"allowed_syscalls"`
	PathRules        PathRules         `json:"path_rules"`
	MaxChildProcs    int               `json:"max_child_procs"`
	ExecAllowance    int               `json:"exec_allowance"`
	ForkAllowance    int               `json:"fork_allowance"`
	ExtraEnvs        map[string]string `json:"extra_envs"`
	PreservedEnvKeys []string          `json:"preserved_env_keys"`
	AllowNetwork     bool              `json:"allow_network"`
	UseLandlock      *bool             `json:"use_landlock"`
}

// useLandlock tells whether the kernel may enforce the path rules (default).
func (p *Policy) useLandlock() bool { return p.UseLandlock == nil || *p.UseLandlock }

// rawPolicy mirrors Policy with pointers so absent keys take defaults.
type rawPolicy struct {
	AllowedSyscalls  []string          `json:"allowed_syscalls"`
	PathRules        *rawPathRules     `json:"path_rules"`
	MaxChildProcs    *int              `json:"max_child_procs"`
	ExecAllowance    *int              `json:"exec_allowance"`
	ForkAllowance    *int              `json:"fork_allowance"`
	ExtraEnvs        map[string]string `json:"extra_envs"`
	PreservedEnvKeys []string          `json:"preserved_env_keys"`
	AllowNetwork     *bool             `json:"allow_network"`
	UseLandlock      *bool             `json:"use_landlock"`
}

type rawPathRules struct {
	Read  []string `json:"read"`
	Write []string `json:"write"`
	Exec  []string `json:"exec"`
}

// DefaultPolicy is used when no -policy is given, and fills absent keys.
func DefaultPolicy() Policy {
	return Policy{
		AllowedSyscalls: nil,
		PathRules: PathRules{
			Read:  []string{"/**"},
			Write: []string{"/home/work/**", "/tmp/**", "/dev/null", "/dev/tty", "/dev/pts/*", "/dev/shm/**", "pipe:*", "socket:*"},
			Exec:  []string{"/usr/bin/**", "/usr/local/bin/**", "/bin/**", "/usr/lib/**", "/home/work/**"},
		},
		MaxChildProcs:    64,
		ExecAllowance:    -1,
		ForkAllowance:    -1,
		ExtraEnvs:        map[string]string{},
		PreservedEnvKeys: []string{"PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "TZ"},
		AllowNetwork:     false,
	}
}

// LoadPolicy reads and validates a policy file.
func LoadPolicy(path string) (Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Policy{}, err
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return Policy{}, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy decodes a policy, rejecting unknown keys and bad values.
func ParsePolicy(data []byte) (Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw rawPolicy
	if err := dec.Decode(&raw); err != nil {
		return Policy{}, fmt.Errorf("invalid policy: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Policy{}, fmt.Errorf("invalid policy: trailing data after the JSON object")
	}
	p := DefaultPolicy()
	if raw.AllowedSyscalls != nil {
		p.AllowedSyscalls = raw.AllowedSyscalls
	}
	if r := raw.PathRules; r != nil {
		if r.Read != nil {
			p.PathRules.Read = r.Read
		}
		if r.Write != nil {
			p.PathRules.Write = r.Write
		}
		if r.Exec != nil {
			p.PathRules.Exec = r.Exec
		}
	}
	if raw.MaxChildProcs != nil {
		p.MaxChildProcs = *raw.MaxChildProcs
	}
	if raw.ExecAllowance != nil {
		p.ExecAllowance = *raw.ExecAllowance
	}
	if raw.ForkAllowance != nil {
		p.ForkAllowance = *raw.ForkAllowance
	}
	if raw.ExtraEnvs != nil {
		p.ExtraEnvs = raw.ExtraEnvs
	}
	if raw.PreservedEnvKeys != nil {
		p.PreservedEnvKeys = raw.PreservedEnvKeys
	}
	if raw.AllowNetwork != nil {
		p.AllowNetwork = *raw.AllowNetwork
	}
	p.UseLandlock = raw.UseLandlock
	return p, p.validate()
}

func (p *Policy) validate() error {
	for _, name := range p.AllowedSyscalls {
		if _, ok := syscallNumbers[name]; !ok {
			return fmt.Errorf("allowed_syscalls: unknown system call %q", name)
		}
		if alwaysDenied[name] {
			return fmt.Errorf("allowed_syscalls: %q is always denied and cannot be allowed", name)
		}
		if _, ok := checkedSyscalls[name]; ok {
			return fmt.Errorf("allowed_syscalls: %q is argument-checked by the jail and cannot be allowed outright", name)
		}
	}
	if p.MaxChildProcs < 0 {
		return fmt.Errorf("max_child_procs must be >= 0, got %d", p.MaxChildProcs)
	}
	if p.ExecAllowance < -1 {
		return fmt.Errorf("exec_allowance must be >= -1, got %d", p.ExecAllowance)
	}
	if p.ForkAllowance < -1 {
		return fmt.Errorf("fork_allowance must be >= -1, got %d", p.ForkAllowance)
	}
	for _, rules := range [][]string{p.PathRules.Read, p.PathRules.Write, p.PathRules.Exec} {
		for _, g := range rules {
			if !strings.HasPrefix(g, "/") && !strings.Contains(g, ":") {
				return fmt.Errorf("path_rules: glob %q must be absolute", g)
			}
		}
	}
	return nil
}

// readsUnrestricted reports whether read-only opens can be allowed in BPF.
func (p *Policy) readsUnrestricted() bool {
	return containsString(p.PathRules.Read, "/**")
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
