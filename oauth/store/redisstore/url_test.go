package redisstore

import (
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const testPassword = "s3cr3t-P@ss/word?#"

// secretURL is a URL whose password is testPassword, properly encoded.

func TestParseURL(t *testing.T) {
	enc := url.UserPassword("admin", testPassword).String() // admin:s3cr3t-P%40ss%2Fword%3F%23
	for _, tc := range []struct {
		name  string
		raw   string
		check func(t *testing.T, o *redis.UniversalOptions)
	}{
		{"one server", "redis://127.0.0.1:6379/0", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "Addrs", o.Addrs, []string{"127.0.0.1:6379"})
			want(t, "DB", o.DB, 0)
			want(t, "TLS", o.TLSConfig == nil, true)
		}},
		{"default port and database", "redis://redis.internal", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "Addrs", o.Addrs, []string{"redis.internal:6379"})
			want(t, "DB", o.DB, 0)
		}},
		{"user, encoded password and database", "redis://" + enc + "@redis.internal:6380/3", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "Username", o.Username, "admin")
			want(t, "Password", o.Password, testPassword)
			want(t, "DB", o.DB, 3)
			want(t, "Addrs", o.Addrs, []string{"redis.internal:6380"})
		}},
		{"password only", "redis://:pw@h:1/1", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "Username", o.Username, "")
			want(t, "Password", o.Password, "pw")
		}},
		{"TLS", "rediss://redis.example.com:6380/0", func(t *testing.T, o *redis.UniversalOptions) {
			if o.TLSConfig == nil {
				t.Fatal("no TLS config for rediss://")
			}
			want(t, "ServerName", o.TLSConfig.ServerName, "redis.example.com")
			want(t, "InsecureSkipVerify", o.TLSConfig.InsecureSkipVerify, false)
		}},
		{"upper-case scheme", "REDIS://h:1/0", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "Addrs", o.Addrs, []string{"h:1"})
		}},
		{"IPv6 host", "redis://[::1]:6379/2", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "Addrs", o.Addrs, []string{"[::1]:6379"})
			want(t, "DB", o.DB, 2)
		}},
		{"max_retries=-1 is go-redis's none", "redis://h/0?max_retries=-1", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "MaxRetries", o.MaxRetries, -1)
			if n := redis.NewUniversalClient(o).(*redis.Client).Options().MaxRetries; n != 0 {
				t.Errorf("go-redis makes max_retries=-1 %d retries, want none", n)
			}
		}},
		{"max_retries=0 is go-redis's default of 3", "redis://h/0?max_retries=0", func(t *testing.T, o *redis.UniversalOptions) {
			if n := redis.NewUniversalClient(o).(*redis.Client).Options().MaxRetries; n != 3 {
				t.Errorf("go-redis makes max_retries=0 %d retries, want its default, 3", n)
			}
		}},
		{"every client honours its calls' deadlines", "redis://h/0", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "ContextTimeoutEnabled", o.ContextTimeoutEnabled, true)
		}},
		{"Sentinel and Cluster clients honour their calls' deadlines too", "redis://h:26379/0?master_name=m", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "ContextTimeoutEnabled", o.ContextTimeoutEnabled, true)
		}},
		{"go-redis options", "redis://h/0?dial_timeout=3&read_timeout=6s&pool_size=20&client_name=ssobridge", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "DialTimeout", o.DialTimeout, 3*time.Second)
			want(t, "ReadTimeout", o.ReadTimeout, 6*time.Second)
			want(t, "PoolSize", o.PoolSize, 20)
			want(t, "ClientName", o.ClientName, "ssobridge")
		}},
		{"Sentinel", "redis://" + enc + "@sentinel1:26379/2?master_name=mymaster&addr=sentinel2:26379&addr=sentinel3:26379&password=master-pw", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "MasterName", o.MasterName, "mymaster")
			want(t, "Addrs", o.Addrs, []string{"sentinel1:26379", "sentinel2:26379", "sentinel3:26379"})
			want(t, "SentinelUsername", o.SentinelUsername, "admin")
			want(t, "SentinelPassword", o.SentinelPassword, testPassword)
			want(t, "Password", o.Password, "master-pw")
			want(t, "DB", o.DB, 2)
			if _, ok := redis.NewUniversalClient(o).(*redis.Client); !ok {
				t.Error("the options do not make a failover client")
			}
		}},
		{"Sentinel over TLS", "rediss://sentinel1:26379?master_name=m", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "TLS", o.TLSConfig != nil, true)
		}},
		{"Cluster", "redis://" + enc + "@node1:7000?addr=node2:7001&addr=node3:7002&read_timeout=2s", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "Addrs", o.Addrs, []string{"node1:7000", "node2:7001", "node3:7002"})
			want(t, "Username", o.Username, "admin")
			want(t, "Password", o.Password, testPassword)
			want(t, "ReadTimeout", o.ReadTimeout, 2*time.Second)
			c := redis.NewUniversalClient(o)
			defer c.Close()
			if _, ok := c.(*redis.ClusterClient); !ok {
				t.Errorf("the options make a %T, want a *redis.ClusterClient", c)
			}
		}},
		{"Cluster with database 0", "rediss://node1:7000/0?addr=node2:7001", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "TLS", o.TLSConfig != nil, true)
			want(t, "Addrs", len(o.Addrs), 2)
		}},
		{"replica reads explicitly off", "redis://h:1/0?addr=h:2&read_only=false&route_randomly=0", func(t *testing.T, o *redis.UniversalOptions) {
			want(t, "ReadOnly", o.ReadOnly, false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseURL(tc.raw)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			tc.check(t, o)
		})
	}
}

func want[T any](t *testing.T, field string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", field, got, want)
	}
}

func TestParseURLErrors(t *testing.T) {
	for _, tc := range []struct {
		name, raw, wantErr string
	}{
		{"empty", "", "the URL is empty"},
		{"white space", " redis://h:1/0\n", "white space"},
		{"no scheme", "redis.internal:6379", "must start with redis:// or rediss://"},
		{"no scheme, password first", "admin:" + testPassword + "@h:1", "must start with redis:// or rediss://"},
		{"http", "http://h:1/0", `scheme "http" is not supported: use redis:// or rediss://`},
		{"unix socket", "unix:///run/redis.sock", `scheme "unix" is not supported`},
		{"no host", "redis://:6379/0", "no host"},
		{"nothing after the scheme", "redis://", "no host"},
		{"port not a number", "redis://h:port/0", "port must be a number"},
		{"port out of range", "redis://h:70000/0", "port must be a number from 1 to 65535"},
		{"port zero", "redis://h:0/0", "port must be a number from 1 to 65535"},
		{"database not a number", "redis://h:1/zero", "database number"},
		{"negative database", "redis://h:1/-1", "database number"},
		{"two path segments", "redis://h:1/0/1", "database number"},
		{"bad escape", "redis://h:1/%zz", `"%" that does not start an escape`},
		{"bad option value escape", "redis://h:1/0?client_name=%zz", `"%" that does not start an escape`},
		{"unknown option", "redis://h:1/0?dial_timout=3s", "unknown option dial_timout"},
		{"bad duration", "redis://h:1/0?dial_timeout=soon", "option dial_timeout must be a duration"},
		{"bad number", "redis://h:1/0?pool_size=many", "option pool_size must be a whole number"},
		{"negative pool size (go-redis would panic)", "redis://h:1/0?pool_size=-1", `option pool_size is negative ("-1")`},
		{"negative timeout", "redis://h:1/0?dial_timeout=-1s", `option dial_timeout is negative`},
		{"max_retries below -1", "redis://h:1/0?max_retries=-2", `option max_retries is negative ("-2"): give 0 (go-redis's default, 3 retries), a number of retries, or -1 for none`},
		{"bad boolean", "redis://h:1/0?pool_fifo=yes", "option pool_fifo must be true or false"},
		{"bad db option", "redis://h:1?db=two", "option db must be a whole number"},
		{"replica reads", "redis://h:1?addr=h:2&read_only=true", "option read_only is not supported"},
		{"replica only", "redis://h:26379?master_name=m&replica_only=1", "option replica_only is not supported"},
		{"route by latency", "redis://h:1?addr=h:2&route_by_latency=true", "option route_by_latency is not supported"},
		{"cluster with a database", "redis://h:1/3?addr=h:2", "Redis Cluster has only database 0"},
		{"cluster with a db option", "redis://h:1?addr=h:2&db=1", "Redis Cluster has only database 0"},
		{"bad cluster address", "redis://h:1?addr=h2", "addr option number 1 must be HOST:PORT"},
		{"cluster address without port", "redis://h:1?addr=h:2&addr=h3:", "addr option number 2 must be HOST:PORT"},
		{"empty master name", "redis://h:26379?master_name=", "option master_name is empty"},
		{"sentinel without port", "redis://sentinel?master_name=m", "must give the sentinel's port"},
		{"fragment", "redis://h:1/0#x", `contains "#"`},
		{"control character", "redis://h:1/0\x00", "control character"},
		{"bad host character", "redis://h x:1/0", "host name contains a character"},
		{"semicolon in options", "redis://h:1/0?a=1;b=2", `not well formed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseURL(tc.raw)
			if err == nil {
				t.Fatalf("ParseURL(%q) = %+v, want an error", tc.raw, o)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not say %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "invalid Redis URL: ") {
				t.Errorf("error %q does not say it is about the Redis URL", err)
			}
		})
	}
}

// A password that is not percent-encoded makes net/url and go-redis read parts of it as the
// host, port, path or options; none of those parts may show up in the error.
func TestParseURLErrorsNeverShowThePassword(t *testing.T) {
	for _, raw := range []string{
		"redis://admin:" + testPassword + "@h:6379/0", // '/', '?' and '#' unencoded
		"redis://admin:pass/word-secret@h:6379/0",     // '/' ends the host early
		"redis://:secretsecret/x@h:6379/0",            // the password becomes the port
		"redis://admin:pa?ss=secretsecret@h:6379/0",   // '?' starts the options
		"redis://admin:pa?secretsecret&x=1@h:6379/0",  // an option name from the password
		"redis://admin:secret%secret@h:6379/0",        // '%' unencoded
		"redis://admin:secret secret@h:6379/0",        // a space
		"redis://admin:secretsecret@h:6379/0?dial_timeout=" + testPassword,
		"redis://admin:secretsecret@h:6379/secretsecret",
		"redis://h:1/0?addr=secretsecret",
		"redis://h:1/0?master_name=m&addr=secretsecret:x",
		"redis://h:26379/0?master_name=m&password=secretsecret&pool_size=secretsecret",
		"redis://h:1/0?db=secretsecret",
		"redis://h:1/0?pool_fifo=secretsecret",
		"redis://h:1/0?dial_timeout=secretsecret",
	} {
		_, err := ParseURL(raw)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded, want an error", raw)
			continue
		}
		for _, secret := range []string{"s3cr3t", "secretsec", "word-secret", "ss=secret", "secret%", "secret secret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("ParseURL(%q): error %q shows part of the password (%q)", raw, err, secret)
			}
		}
	}
}

// Every option go-redis reads from a URL must reach the UniversalOptions, or a URL option would
// be silently ignored. Each URL sets every option its mode accepts.
func TestParseURLCarriesEveryOption(t *testing.T) {
	common := "dial_timeout=1s&read_timeout=2s&write_timeout=3s&pool_size=4&pool_timeout=5s" +
		"&min_idle_conns=6&max_idle_conns=7&max_active_conns=8&conn_max_idle_time=9s" +
		"&conn_max_lifetime=10s&conn_max_lifetime_jitter=1s&max_retries=11&min_retry_backoff=12ms" +
		"&max_retry_backoff=13ms&client_name=cn&protocol=2&pool_fifo=true&max_concurrent_dials=14" +
		"&pipeline_pool_size=15&pipeline_read_buffer_size=16&pipeline_write_buffer_size=17"
	for _, tc := range []struct {
		name  string
		raw   string
		parse func(string) (any, error)
	}{
		{"one server", "rediss://u:p@h:6379/5?skip_verify=true&" + common,
			func(s string) (any, error) { return redis.ParseURL(s) }},
		{"Sentinel", "rediss://u:p@h:26379/5?master_name=m&addr=h2:26379&username=mu&password=mp" +
			"&dialer_retries=3&dialer_retry_timeout=4ms&context_timeout_enabled=true" +
			"&disableIdentity=true&identitySuffix=sfx&unstable_resp3=true&" + common,
			func(s string) (any, error) { return redis.ParseFailoverURL(s) }},
		{"Cluster", "rediss://u:p@h:7000?addr=h2:7001&max_redirects=3&dialer_retries=3" +
			"&dialer_retry_timeout=4ms&failing_timeout_seconds=5&" + common,
			func(s string) (any, error) { return redis.ParseClusterURL(s) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := tc.parse(tc.raw)
			if err != nil {
				t.Fatalf("go-redis: %v", err)
			}
			got, err := ParseURL(tc.raw)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			renamed := map[string]string{"SentinelAddrs": "Addrs", "Addr": "Addrs"}
			sv, gv := reflect.ValueOf(src).Elem(), reflect.ValueOf(got).Elem()
			for i := range sv.NumField() {
				f := sv.Type().Field(i)
				v := sv.Field(i)
				if v.IsZero() || f.Name == "Network" {
					continue
				}
				name := f.Name
				if n, ok := renamed[name]; ok {
					name = n
				}
				g := gv.FieldByName(name)
				if !g.IsValid() {
					t.Errorf("go-redis sets %s, which UniversalOptions has no field for", f.Name)
					continue
				}
				w := v.Interface()
				if name == "Addrs" && f.Name == "Addr" {
					w = []string{v.String()}
				}
				if !reflect.DeepEqual(g.Interface(), w) {
					t.Errorf("%s = %v, want %v as go-redis parsed it", name, g.Interface(), w)
				}
			}
			if tc.name == "one server" && !got.TLSConfig.InsecureSkipVerify {
				t.Error("skip_verify=true was lost")
			}
		})
	}
}

func FuzzParseURL(f *testing.F) {
	for _, seed := range []string{
		"redis://127.0.0.1:6379/0",
		"rediss://user:pass@redis.example.com:6380/2?dial_timeout=3s",
		"redis://:pw@sentinel:26379/1?master_name=m&addr=s2:26379&password=x",
		"redis://n1:7000?addr=n2:7001&addr=n3:7002",
		"redis://[::1]:6379",
		"redis://u:p%40ss@h/0",
		"redis://h:1/0?db=3&pool_fifo=true",
		"http://h",
		"",
		"redis://:a/b@c",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		o, err := ParseURL(raw)
		if err != nil {
			if o != nil {
				t.Errorf("ParseURL returned options and an error")
			}
			if !strings.HasPrefix(err.Error(), "invalid Redis URL: ") {
				t.Errorf("error %q does not say it is about the Redis URL", err)
			}
			// A password long enough not to match the advice by chance never shows in it.
			if u, perr := url.Parse(raw); perr == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && len(pw) >= 12 && strings.Contains(err.Error(), pw) {
					t.Errorf("error %q shows the password", err)
				}
			}
			return
		}
		if o == nil || len(o.Addrs) == 0 || slices.Contains(o.Addrs, "") {
			t.Fatalf("ParseURL(%q) = %+v without an error", raw, o)
		}
	})
}
