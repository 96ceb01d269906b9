package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ParseURL reads the bridge's Redis URL into options for redis.NewUniversalClient:
//
//	redis://[user:password@]host[:port][/db][?options]       one server (rediss:// for TLS)
//	redis://[user:password@]host:port[/db]?master_name=NAME   Sentinel; more sentinels with addr=HOST:PORT
//	redis://[user:password@]host[:port]?addr=HOST:PORT[&...]  Cluster, seeded from every address given
//
// In a Sentinel URL the user and password authenticate to the sentinels, and the username= and
// password= options to the Redis servers behind them (go-redis's convention). Other options are
// go-redis's (dial_timeout=5s, pool_size=20, ...). Options that send reads to replicas
// (read_only, replica_only, route_by_latency, route_randomly) are refused: the bridge reads
// records it has just written, which a replica may not have yet.
//
// Options mean what go-redis documents, max_retries included: 0 (or none) is its default of 3
// retries, -1 none. Whatever the URL says, the client honours the deadline of each call's context
// (go-redis's ContextTimeoutEnabled): a request's deadline bounds every store call it makes, and a
// call cut short by it is never retried.
//
// Errors say what to fix and never contain the password, nor any part of the URL that could be
// a mis-encoded password: they are meant to be logged and shown to whoever set the URL.
func ParseURL(raw string) (*redis.UniversalOptions, error) {
	u, q, err := checkURL(raw)
	if err != nil {
		return nil, err
	}
	switch {
	case q.Get("master_name") != "":
		fo, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, explain(err, q)
		}
		return failoverOptions(fo), nil
	case len(q["addr"]) > 0:
		if db, _ := databaseNumber(u.Path); db != 0 || q.Has("db") {
			return nil, invalid("Redis Cluster has only database 0: remove the database number from the URL")
		}
		co, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, explain(err, q)
		}
		return clusterOptions(co), nil
	default:
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, explain(err, q)
		}
		return simpleOptions(o), nil
	}
}

func invalid(msg string) error {
	return errors.New("invalid Redis URL: " + msg)
}

var schemePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// optionNamePattern is what an option name must look like before an error may quote it: a name
// made of other characters is more likely a piece of a password that was not percent-encoded.
var optionNamePattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,40}$`)

// replicaReadOptions would let reads go to replicas, which lag behind the primary.
var replicaReadOptions = []string{"read_only", "replica_only", "route_by_latency", "route_randomly", "use_disconnected_replicas"}

// checkURL does the checks that go-redis either does not do or reports by quoting the input.
func checkURL(raw string) (*url.URL, url.Values, error) {
	if raw == "" {
		return nil, nil, invalid("the URL is empty")
	}
	if strings.TrimSpace(raw) != raw {
		return nil, nil, invalid("the URL starts or ends with white space")
	}
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok || !schemePattern.MatchString(scheme) {
		return nil, nil, invalid("the URL must start with redis:// or rediss://")
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
	case "unix":
		return nil, nil, invalid(`scheme "unix" is not supported: use redis:// or rediss://`)
	default:
		return nil, nil, invalid(fmt.Sprintf("scheme %q is not supported: use redis:// or rediss://", scheme))
	}

	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, explainParse(err)
	}
	if strings.Contains(raw, "#") {
		return nil, nil, invalid(`the URL contains "#": if it is part of the password, write it as %23`)
	}
	if strings.Contains(u.Path, "@") || strings.Contains(u.RawQuery, "@") {
		return nil, nil, invalid(`the URL contains "@" after the host: if the password contains "/", "?" or "@", write them as %2F, %3F and %40`)
	}
	if u.Hostname() == "" {
		return nil, nil, invalid("the URL has no host: write it as redis://HOST:PORT/0")
	}
	if p := u.Port(); p != "" && !validPort(p) {
		return nil, nil, invalid("the port must be a number from 1 to 65535")
	}
	if _, ok := databaseNumber(u.Path); !ok {
		return nil, nil, invalid("the database number after the host (as in redis://host:6379/0) must be a whole number, 0 or more")
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		var escErr url.EscapeError
		if errors.As(err, &escErr) {
			return nil, nil, invalid(`the URL contains a "%" that does not start an escape like %40: if it is part of an option value, write it as %25`)
		}
		return nil, nil, invalid(`the options after "?" are not well formed: separate them with "&" and percent-encode special characters in their values`)
	}
	for _, name := range replicaReadOptions {
		if v := q.Get(name); v != "" && v != "false" && v != "0" {
			return nil, nil, invalid(fmt.Sprintf("option %s is not supported: the bridge reads records it has just written, which a replica may not have yet", name))
		}
	}
	// go-redis takes a negative size or count as given (a negative pool_size makes it panic), and
	// a negative timeout means none; the bridge needs neither. max_retries=-1 is go-redis's "no
	// retries" (0 is its default, 3): the bridge's takes are safe to send twice, but an
	// administrator may want none.
	for name, vs := range q {
		if name == "addr" || name == "password" || name == "username" || name == "sentinel_password" || name == "sentinel_username" || name == "master_name" || name == "client_name" {
			continue
		}
		for _, v := range vs {
			if name == "max_retries" && strings.TrimSpace(v) == "-1" {
				continue
			}
			if strings.HasPrefix(strings.TrimSpace(v), "-") {
				if name == "max_retries" {
					return nil, nil, invalid(fmt.Sprintf("option max_retries is negative (%q): give 0 (go-redis's default, 3 retries), a number of retries, or -1 for none", v))
				}
				return nil, nil, invalid(fmt.Sprintf("option %s is negative (%q): give 0 or more", name, v))
			}
		}
	}
	if q.Has("db") && !isDigits(q.Get("db")) {
		return nil, nil, invalid("option db must be a whole number, 0 or more")
	}
	for i, addr := range q["addr"] {
		h, p, err := net.SplitHostPort(addr)
		if err != nil || h == "" || !validPort(p) {
			return nil, nil, invalid(fmt.Sprintf("addr option number %d must be HOST:PORT, with a port from 1 to 65535", i+1))
		}
	}
	if q.Has("master_name") && q.Get("master_name") == "" {
		return nil, nil, invalid("option master_name is empty: give the name of the master the sentinels watch")
	}
	if q.Get("master_name") != "" && u.Port() == "" {
		return nil, nil, invalid("a Sentinel URL must give the sentinel's port (Sentinel usually listens on 26379), as in redis://sentinel:26379/0?master_name=mymaster")
	}
	return u, q, nil
}

// explainParse turns a net/url error into advice. net/url quotes the URL, password included,
// and its inner errors quote fragments of it, so none of its text is used.
func explainParse(err error) error {
	var escErr url.EscapeError
	var hostErr url.InvalidHostError
	msg := err.Error()
	switch {
	case errors.As(err, &escErr):
		return invalid(`the URL contains a "%" that does not start an escape like %40: if it is part of the password, write it as %25`)
	case errors.As(err, &hostErr):
		return invalid("the host name contains a character that is not allowed in host names")
	case strings.Contains(msg, "invalid control character"):
		return invalid("the URL contains a control character (a stray newline or tab?)")
	case strings.Contains(msg, "invalid port"):
		return invalid(`the port must be a number from 1 to 65535: if the password contains "/", write it as %2F`)
	case strings.Contains(msg, "invalid userinfo"):
		return invalid(`the user name or password contains a character that must be percent-encoded (for example "@" as %40, "/" as %2F, space as %20)`)
	default:
		return invalid(`the URL is not well formed: if the password contains any of : / ? # [ ] @ % or spaces, percent-encode them`)
	}
}

// explain turns a go-redis parse error into advice. go-redis quotes option values, so only
// option names are repeated, and only names that appear in the URL and look like names.
func explain(err error, q url.Values) error {
	msg := err.Error()
	if list, ok := strings.CutPrefix(msg, "redis: unexpected option: "); ok {
		var names []string
		for name := range strings.SplitSeq(list, ", ") {
			if q.Has(name) && optionNamePattern.MatchString(name) {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			return invalid("the URL has an option go-redis does not know")
		}
		return invalid(fmt.Sprintf("unknown option %s (options are go-redis's, such as dial_timeout or pool_size)", strings.Join(names, ", ")))
	}
	if rest, ok := strings.CutPrefix(msg, "redis: invalid "); ok {
		name, kind, _ := strings.Cut(rest, " ")
		if q.Has(name) && optionNamePattern.MatchString(name) {
			switch {
			case strings.HasPrefix(kind, "number"):
				return invalid(fmt.Sprintf("option %s must be a whole number", name))
			case strings.HasPrefix(kind, "duration"):
				return invalid(fmt.Sprintf("option %s must be a duration such as 5s or 500ms (a plain number counts as seconds)", name))
			case strings.HasPrefix(kind, "boolean"):
				return invalid(fmt.Sprintf("option %s must be true or false", name))
			}
		}
	}
	return invalid("go-redis could not read it (check the options after \"?\")")
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && isDigits(p) && n >= 1 && n <= 65535
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// databaseNumber reads the path of a Redis URL: empty, "/" or "/N".
func databaseNumber(path string) (int, bool) {
	s := strings.TrimPrefix(path, "/")
	if s == "" {
		return 0, true
	}
	if !isDigits(s) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 32)
	return int(n), err == nil
}

func simpleOptions(o *redis.Options) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:                   []string{o.Addr},
		ClientName:              o.ClientName,
		DB:                      o.DB,
		Protocol:                o.Protocol,
		Username:                o.Username,
		Password:                o.Password,
		MaxRetries:              o.MaxRetries,
		MinRetryBackoff:         o.MinRetryBackoff,
		MaxRetryBackoff:         o.MaxRetryBackoff,
		DialTimeout:             o.DialTimeout,
		DialerRetries:           o.DialerRetries,
		DialerRetryTimeout:      o.DialerRetryTimeout,
		ReadTimeout:             o.ReadTimeout,
		WriteTimeout:            o.WriteTimeout,
		ContextTimeoutEnabled:   true,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		PipelinePoolSize:        o.PipelinePoolSize,
		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,
		TLSConfig:               o.TLSConfig,
	}
}

func failoverOptions(o *redis.FailoverOptions) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:                   o.SentinelAddrs,
		MasterName:              o.MasterName,
		ClientName:              o.ClientName,
		DB:                      o.DB,
		Protocol:                o.Protocol,
		Username:                o.Username,
		Password:                o.Password,
		SentinelUsername:        o.SentinelUsername,
		SentinelPassword:        o.SentinelPassword,
		MaxRetries:              o.MaxRetries,
		MinRetryBackoff:         o.MinRetryBackoff,
		MaxRetryBackoff:         o.MaxRetryBackoff,
		DialTimeout:             o.DialTimeout,
		DialerRetries:           o.DialerRetries,
		DialerRetryTimeout:      o.DialerRetryTimeout,
		ReadTimeout:             o.ReadTimeout,
		WriteTimeout:            o.WriteTimeout,
		ContextTimeoutEnabled:   true,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		PipelinePoolSize:        o.PipelinePoolSize,
		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,
		TLSConfig:               o.TLSConfig,
		DisableIdentity:         o.DisableIdentity,
		IdentitySuffix:          o.IdentitySuffix,
		//lint:ignore SA1019 carried over as go-redis parsed it, so that every URL option reads the same here
		UnstableResp3: o.UnstableResp3,
	}
}

func clusterOptions(o *redis.ClusterOptions) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:                   o.Addrs,
		IsClusterMode:           true,
		ClientName:              o.ClientName,
		Protocol:                o.Protocol,
		Username:                o.Username,
		Password:                o.Password,
		MaxRedirects:            o.MaxRedirects,
		MaxRetries:              o.MaxRetries,
		MinRetryBackoff:         o.MinRetryBackoff,
		MaxRetryBackoff:         o.MaxRetryBackoff,
		DialTimeout:             o.DialTimeout,
		DialerRetries:           o.DialerRetries,
		DialerRetryTimeout:      o.DialerRetryTimeout,
		ReadTimeout:             o.ReadTimeout,
		WriteTimeout:            o.WriteTimeout,
		ContextTimeoutEnabled:   true,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		PipelinePoolSize:        o.PipelinePoolSize,
		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,
		TLSConfig:               o.TLSConfig,
		FailingTimeoutSeconds:   o.FailingTimeoutSeconds,
	}
}
