#!/usr/bin/env perl
# admin_bench.pl -- the Admin API and config store benchmark:
#   1. Admin PUT latency (p50/p99) with a small store, and with 10,000 routes stored;
#   2. the time from a PUT's answer until every worker serves the changed route (p50/p99/max),
#      small store and 10,000 routes;
#   3. with 10,000 routes stored (DIR/data/store.json written before start): start-up time
#      (spawn until every worker serves the last route) and RSS (master + workers).
# Bars: change visible on all workers <= 1 s at p99; 10,000 routes load in <= 2 s.
# Prints a summary block at the end; exit status 1 when a bar is missed.
#
#   perl t/bench/admin_bench.pl
#
# Knobs (environment): BENCH_WORKERS (2) BENCH_PUTS (300) BENCH_CHANGES (30)
# BENCH_ROUTES (10000) BENCH_BIG_PUTS (50). Everything listens on 127.0.0.1; every wait has
# a deadline; every process started here is killed at exit (by Sluice::Test).
use strict;
use warnings;
use FindBin qw($Bin);
use lib "$Bin/../lib";
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice admin_put admin_req http_req wait_for repo_root encode_json);

chdir repo_root() or die "chdir: $!\n";

my %K = (
    workers  => $ENV{BENCH_WORKERS} // 2,
    puts     => $ENV{BENCH_PUTS}    // 300,
    changes  => $ENV{BENCH_CHANGES} // 30,
    routes   => $ENV{BENCH_ROUTES}  // 10000,
    big_puts => $ENV{BENCH_BIG_PUTS} // 50,
);
my $PROPAGATION_BAR = 1.0;
my $LOAD_BAR = 2.0;

# bench-pid: answers {pid, tag} from access, so a request tells which worker served which
# version of the route
my $PLUGINS = tempdir('sluice-admin-bench-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open my $fh, '>', "$PLUGINS/bench-pid.lua" or die;
print $fh <<'LUA';
local ffi = require("ffi")
pcall(ffi.cdef, "int getpid(void);")
local pid = ffi.C.getpid()
return {
    name = "bench-pid", version = 1, priority = 100,
    schema = { type = "object", properties = { tag = { type = "string" } } },
    access = function(conf) return 200, { pid = pid, tag = conf.tag } end,
}
LUA
close $fh;

my %NODE = (plugin_paths => [$PLUGINS], plugins => ['key-auth', 'ai-proxy', 'bench-pid'],
            access_log => JSON::PP::false());

sub pct {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return 0 if !@v;
    my $i = int($p / 100 * @v + 0.5) - 1;
    $i = 0 if $i < 0;
    $i = $#v if $i > $#v;
    return $v[$i];
}

sub ms { sprintf '%.1f ms', $_[0] * 1000 }

sub put_latencies {
    my ($s, $n, $prefix) = @_;
    my @t;
    for my $i (1 .. $n) {
        # two thirds new routes, one third replacements
        my $id = $i % 3 ? "$prefix-$i" : "$prefix-" . ($i - 1);
        my $t0 = time;
        my $res = admin_put($s, "/apisix/admin/routes/$id", { uri => "/$prefix/$i",
            plugins => { 'bench-pid' => { tag => "t$i" } } }, timeout => 10);
        push @t, time - $t0;
        die "PUT failed: $res->{status} $res->{body}\n" if $res->{status} >= 300;
    }
    return @t;
}

# seconds from the PUT's answer until every worker answers the new tag (undef: not in 5 s)
sub propagation {
    my ($s, $pids, $n) = @_;
    my @t;
    for my $i (1 .. $n) {
        # the workers poll the store's version every 0.1 s: start at a random phase of it
        sleep rand 0.1;
        my $tag = 'p' . $i . '-' . int(rand 1e9);
        my $res = admin_put($s, '/apisix/admin/routes/prop', { uri => '/prop',
            plugins => { 'bench-pid' => { tag => $tag } } }, timeout => 10);
        die "PUT failed: $res->{status}\n" if $res->{status} >= 300;
        my $t0 = time;
        my %seen;
        while (time - $t0 < 5 && grep({ !$seen{$_} } @$pids)) {
            my $r = http_req($s, 'GET', '/prop', timeout => 2);
            $seen{ $r->{json}{pid} } = 1 if $r->{json} && ($r->{json}{tag} // '') eq $tag;
        }
        push @t, grep({ !$seen{$_} } @$pids) ? 99 : time - $t0;
    }
    return @t;
}

sub rss_kb {
    my (@pids) = @_;
    my $sum = 0;
    for my $pid (@pids) {
        open my $f, '<', "/proc/$pid/status" or next;
        while (<$f>) {
            $sum += $1 if /^VmRSS:\s+(\d+)/;
        }
    }
    return $sum;
}

my %R;

# 1 + 2: small store
{
    my $s = start_sluice(workers => $K{workers}, config => \%NODE);
    my @pids;
    wait_for(sub { (@pids = $s->worker_pids) == $K{workers} }, 10);
    my @put = put_latencies($s, $K{puts}, 'small');
    $R{put_small} = [ pct(50, @put), pct(99, @put) ];
    my @prop = propagation($s, \@pids, $K{changes});
    $R{prop_small} = [ pct(50, @prop), pct(99, @prop), pct(100, @prop) ];
    $s->stop;
}

# 3: 10,000 routes stored before start
{
    my %routes;
    for my $i (1 .. $K{routes}) {
        my $id = "r$i";
        # a realistic AI route: ai-proxy with a provider key, a model, an endpoint
        $routes{$id} = { createdIndex => $i, modifiedIndex => $i, value => {
            id => $id, uri => "/v1/r$i/chat/completions", methods => ['POST'],
            create_time => 1700000000, update_time => 1700000000,
            plugins => { 'ai-proxy' => { provider => 'openai-compatible',
                auth => { header => { Authorization => "Bearer sk-$i" } },
                options => { model => 'gpt-4o' },
                override => { endpoint => 'http://127.0.0.1:9/v1/chat/completions' } } } } };
    }
    $routes{last} = { createdIndex => $K{routes} + 1, modifiedIndex => $K{routes} + 1, value => {
        id => 'last', uri => '/last', plugins => { 'bench-pid' => { tag => 'last' } },
        create_time => 1700000000, update_time => 1700000000 } };
    my $store = encode_json({ _format => 'sluice-store', _version => 1,
                              _index => $K{routes} + 1, routes => \%routes, services => {},
                              upstreams => {}, consumers => {}, plugin_configs => {},
                              global_rules => {}, plugin_metadata => {}, ssls => {} });
    $R{store_bytes} = length $store;

    my $t0 = time;
    my $s = start_sluice(workers => $K{workers}, config => \%NODE,
                         files => { 'data/store.json' => $store }, timeout => 30);
    my @pids;
    wait_for(sub { (@pids = $s->worker_pids) == $K{workers} }, 10);
    my %seen;
    while (time - $t0 < 30 && grep({ !$seen{$_} } @pids)) {
        my $r = http_req($s, 'GET', '/last', timeout => 5);
        $seen{ $r->{json}{pid} } = 1 if $r->{json} && ($r->{json}{tag} // '') eq 'last';
    }
    $R{startup} = time - $t0;
    sleep 0.5;
    $R{rss_master} = rss_kb($s->pid);
    $R{rss_workers} = rss_kb(@pids);
    $R{rss_total} = $R{rss_master} + $R{rss_workers};

    my @put = put_latencies($s, $K{big_puts}, 'big');
    $R{put_big} = [ pct(50, @put), pct(99, @put) ];
    my @prop = propagation($s, \@pids, int($K{changes} / 3) || 1);
    $R{prop_big} = [ pct(50, @prop), pct(99, @prop), pct(100, @prop) ];
    $s->stop;
}

my $ok = $R{prop_small}[1] <= $PROPAGATION_BAR && $R{prop_big}[1] <= $PROPAGATION_BAR
         && $R{startup} <= $LOAD_BAR;

printf "\n== Admin API and config store (%d workers) ==\n", $K{workers};
printf "Admin PUT latency, small store (%d PUTs):        p50 %s, p99 %s\n", $K{puts},
       ms($R{put_small}[0]), ms($R{put_small}[1]);
printf "change visible on all workers, small store (%d): p50 %s, p99 %s, max %s  (bar <= 1 s)\n",
       $K{changes}, ms($R{prop_small}[0]), ms($R{prop_small}[1]), ms($R{prop_small}[2]);
printf "%d routes stored (%.1f MB store.json):\n", $K{routes}, $R{store_bytes} / 1048576;
printf "  start-up until every worker serves them:      %s  (bar <= 2 s)\n", ms($R{startup});
printf "  RSS: master %.1f MB, workers %.1f MB (%.1f MB each), total %.1f MB\n",
       $R{rss_master} / 1024, $R{rss_workers} / 1024,
       $R{rss_workers} / 1024 / $K{workers}, $R{rss_total} / 1024;
printf "  Admin PUT latency (%d PUTs):                   p50 %s, p99 %s\n", $K{big_puts},
       ms($R{put_big}[0]), ms($R{put_big}[1]);
printf "  change visible on all workers:                p50 %s, p99 %s, max %s  (bar <= 1 s)\n",
       ms($R{prop_big}[0]), ms($R{prop_big}[1]), ms($R{prop_big}[2]);
printf "bars: %s\n", $ok ? 'met' : 'MISSED';
exit($ok ? 0 : 1);
