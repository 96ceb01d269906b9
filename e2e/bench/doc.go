// Package bench drives Mattermost-style sign-ins against a bridge and measures their cost: it is
// the engine of `ssobridge bench`. Run loads a bridge, started in this process on a GitLab
// emulator or running elsewhere, with concurrent whole sign-ins (authorize, GitLab, callback,
// token, /api/v4/user), code redemptions alone or user requests alone, and returns throughput,
// latency percentiles of each operation and of each step, errors by kind, Redis commands, round
// trips and CPU per operation, the bridge's CPU per operation (from its /metrics) and memory.
// Print writes a Result as `ssobridge bench` shows it.
package bench
