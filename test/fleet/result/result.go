// Package result is the JSON report of the fleet harness (test/fleet),
// written by it and read by test/fleet/report.
package result

import "fmt"

// Report is the JSON the harness writes; test/fleet/report reads it.
// Field names of the scenarios are those of issue 20.
type Report struct {
	Nodes         int     `json:"nodes"`
	Objects       int     `json:"objects"`
	RefreshMS     int64   `json:"refresh_ms"`
	CacheTTLMS    int64   `json:"cache_ttl_ms"`
	TimeoutMS     int64   `json:"timeout_ms"`
	Plugin        string  `json:"plugin"`
	Started       string  `json:"started"`
	SetupS        float64 `json:"setup_s"`
	DurationS     float64 `json:"duration_s"`
	MemPerNodeMiB float64 `json:"mem_per_node_mib"`
	// MemPerNodeLoadedMiB: the same with scale_up's tasks running.
	MemPerNodeLoadedMiB float64 `json:"mem_per_node_loaded_mib,omitempty"`

	Rotation    *Rotation    `json:"rotation,omitempty"`
	Storm       *Storm       `json:"storm,omitempty"`
	ScaleUp     *ScaleUp     `json:"scale_up,omitempty"`
	Provider    *Provider    `json:"provider,omitempty"`
	SwarmNative *SwarmNative `json:"swarm_native,omitempty"`

	Bounds []Bound `json:"bounds"`
}

// Bound is one checked limit.
type Bound struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type Rotation struct {
	Tasks        int   `json:"tasks"`
	TasksUpdated int   `json:"tasks_updated"`
	P50MS        int64 `json:"p50_ms"`
	P95MS        int64 `json:"p95_ms"`
	MaxMS        int64 `json:"max_ms"`
	RefreshMS    int64 `json:"refresh_ms"`
	// BackendReadsPerInterval: reads the store answered, per refresh
	// interval, over SteadyIntervals intervals before the rotation.
	BackendReadsPerInterval float64 `json:"backend_reads_per_interval"`
	SteadyIntervals         int     `json:"steady_intervals"`
	BackendRequests         int     `json:"backend_requests"`
}

type Storm struct {
	// The dockerd restart of every node at once.
	StormPhase
	// PluginCycle: every plugin disabled and enabled at once.
	PluginCycle StormPhase `json:"plugin_cycle"`
	// ThrottleRate: reads per second the store answers before throttling.
	ThrottleRate  float64 `json:"throttle_rate"`
	ThrottleBurst int     `json:"throttle_burst"`
}

type StormPhase struct {
	Tasks              int   `json:"tasks"`
	MountsFailed       int   `json:"mounts_failed"`
	BackendReads       int   `json:"backend_reads"`
	BackendRequests    int   `json:"backend_requests"`
	ThrottledByBackend int   `json:"throttled_by_backend"`
	RecoverMS          int64 `json:"recover_ms"`
}

type ScaleUp struct {
	Tasks        int   `json:"tasks"`
	NodesUsed    int   `json:"nodes_used"`
	MountsFailed int   `json:"mounts_failed"`
	Mounts       int   `json:"mounts"`
	MountP50MS   int64 `json:"mount_p50_ms"`
	MountP99MS   int64 `json:"mount_p99_ms"`
	StartP50MS   int64 `json:"start_p50_ms"`
	StartP99MS   int64 `json:"start_p99_ms"`
	AllRunningMS int64 `json:"all_running_ms"`
	BackendReads int   `json:"backend_reads"`
	Requests     int   `json:"backend_requests"`
}

type Provider struct {
	Tasks         int   `json:"tasks"`
	ProviderCalls int   `json:"provider_calls"`
	BackendReads  int   `json:"backend_reads"`
	AllRunningMS  int64 `json:"all_running_ms"`
}

type SwarmNative struct {
	Tasks             int   `json:"tasks"`
	TasksUpdated      int   `json:"tasks_updated"`
	P50MS             int64 `json:"p50_ms"`
	P95MS             int64 `json:"p95_ms"`
	MaxMS             int64 `json:"max_ms"`
	UpdateParallelism int   `json:"update_parallelism"`
	BackendReads      int   `json:"backend_reads"`
}

// Bound records one checked limit.
func (r *Report) Bound(name string, ok bool, format string, args ...any) {
	r.Bounds = append(r.Bounds, Bound{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}
