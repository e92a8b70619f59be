#!/usr/bin/env perl
# core.pl -- the core host benchmark: wrk against Sluice and against nginx proxy_pass, both
# proxying to the same static nginx (a fixed 1 KB JSON, keep-alive), same worker count, runs
# interleaved round by round; then idle RSS per worker, then end-to-end routing with 10 vs
# 10,000 routes. Prints a summary block at the end (README.md's bench section copies it).
#
#   perl t/bench/core.pl              # the benchmark
#   perl t/bench/core.pl --profile    # perf record -g on the worker under load, plus LuaJIT's
#                                     # own profiler through the bench-trivial plugin
#
# Knobs (environment): BENCH_THREADS (1) BENCH_CONNS (32) BENCH_DURATION (10, seconds)
# BENCH_WARMUP (2) BENCH_ROUNDS (3) BENCH_WORKERS (1) BENCH_ROUTES (10000)
# BENCH_PROFILE_SECONDS (10) BENCH_SKIP (comma list of: log, nolog, routes, rss)
# BENCH_PIN (unset; "1" puts every gateway on CPU 1 and wrk and the upstream on CPU 0).
# Everything listens on 127.0.0.1, every wrk run is bounded by -d and by timeout(1), every
# process started here is killed at exit (Sluice by Sluice::Test, nginx by its group).
use strict;
use warnings;
use FindBin qw($Bin);
use lib "$Bin/../lib";
use lib "$Bin/lib";
use SluiceBench qw(spawn can_connect slurp spew child_pids pin cpu_seconds to_ms median);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(setpgid _exit WNOHANG);
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice free_port wait_for repo_root);

my $ROOT = repo_root();
chdir $ROOT or die "chdir $ROOT: $!\n";

my %K = (
    threads  => $ENV{BENCH_THREADS}  // 1,
    conns    => $ENV{BENCH_CONNS}    // 32,
    duration => $ENV{BENCH_DURATION} // 10,
    warmup   => $ENV{BENCH_WARMUP}   // 2,
    rounds   => $ENV{BENCH_ROUNDS}   // 3,
    workers  => $ENV{BENCH_WORKERS}  // 1,
    routes   => $ENV{BENCH_ROUTES}   // 10000,
    prof_s   => $ENV{BENCH_PROFILE_SECONDS} // 10,
    pin      => $ENV{BENCH_PIN} // '',
);
my ($PIN_GW, $PIN_LOAD) = $K{pin} ? (1, 0) : ();
my %SKIP = map { $_ => 1 } split /,/, ($ENV{BENCH_SKIP} // '');
my $PROFILE = grep { $_ eq '--profile' } @ARGV;

my $PATH = '/bench/echo';
my $PLUGIN_DIR = "$Bin/plugins";
my $TMP = tempdir('sluice-bench-XXXXXX', TMPDIR => 1, CLEANUP => 0);
my @NGINX;                                  # pids (process-group leaders) to kill at exit

END {
    my $status = $?;
    for my $pid (@NGINX) {
        kill 'QUIT', $pid;
    }
    for my $pid (@NGINX) {
        my $deadline = time + 5;
        sleep 0.05 while waitpid($pid, WNOHANG) == 0 && time < $deadline;
        kill 'KILL', -$pid;
        waitpid($pid, WNOHANG);
    }
    remove_tree($TMP) if $TMP && !$ENV{SLUICE_KEEP};
    $? = $status;
}


# ---------------------------------------------------------------------------------------------
# processes


sub render {
    my ($template, %v) = @_;
    my $s = slurp("$Bin/nginx/$template");
    die "missing template t/bench/nginx/$template\n" if $s eq '';
    my @lines = split /^/, $s;
    for (grep { !/^\s*#/ } @lines) {           # comments name the placeholders; leave them
        s/\@(\w+)\@/exists $v{$1} ? $v{$1} : die "unset \@$1\@ in $template\n"/ge;
    }
    return join '', @lines;
}


# A 1 KB JSON object, the same bytes every time; no quotes that nginx's return would need
# escaped.
sub body_1k {
    my @items;
    my $i = 0;
    while (1) {
        my $s = '{"id":"bench","object":"chat.completion","items":[' . join(',', @items)
              . '],"pad":"';
        my $pad = 1023 - length($s) - 2;
        return $s . ('x' x $pad) . '"}' . "\n" if $pad < 40;
        push @items, sprintf('{"n":%d,"v":"value-%04d"}', $i, $i);
        $i++;
    }
}


sub start_nginx {
    my ($name, $template, %v) = @_;
    my $nworkers = $v{WORKERS} // 1;
    my $prefix = "$TMP/$name";
    make_path("$prefix/tmp");
    my $port = free_port();
    my $conf = "$prefix/nginx.conf";
    spew($conf, render($template, PREFIX => $prefix, PORT => $port, %v));
    my $pid = spawn([ 'nginx', '-p', $prefix, '-e', "$prefix/early-error.log", '-c', $conf ],
                    "$prefix/stderr.log");
    push @NGINX, $pid;
    wait_for(sub { can_connect($port) || waitpid($pid, WNOHANG) != 0 }, 10);
    die "nginx $name did not start:\n" . slurp("$prefix/stderr.log")
        . slurp("$prefix/early-error.log") . "\n" if !can_connect($port);
    my @workers;
    wait_for(sub { @workers = child_pids($pid); @workers >= $nworkers }, 10);
    pin($name eq 'upstream' ? $PIN_LOAD : $PIN_GW, $pid, @workers);
    return { name => $name, port => $port, pid => $pid, prefix => $prefix, pids => \@workers };
}


sub route {
    my ($id, $uri, $up_port) = @_;
    return { id => "$id", uri => $uri, plugins => { 'bench-trivial' => {} },
             upstream => { type => 'roundrobin', nodes => { "127.0.0.1:$up_port" => 1 } } };
}


sub start_gateway {
    my (%o) = @_;
    my $s = start_sluice(
        workers => $K{workers},
        routes  => $o{routes},
        timeout => 120,
        env     => $o{env},
        config  => {
            log_level    => 'warn',
            plugins      => ['bench-trivial'],
            plugin_paths => [$PLUGIN_DIR],
            $o{access_log} ? () : (access_log => JSON::PP::false()),
        },
    );
    pin($PIN_GW, $s->pid, $s->worker_pids);
    return $s;
}


# ---------------------------------------------------------------------------------------------
# wrk


# Runs wrk for $secs against $port (with an optional Lua script); returns the parsed result.
sub wrk {
    my ($port, $secs, $script) = @_;
    my @cmd = (defined $PIN_LOAD ? ('taskset', '-c', $PIN_LOAD) : (),
               'timeout', '-k', '5', $secs + 30, 'wrk', "-t$K{threads}", "-c$K{conns}",
               "-d${secs}s", '--latency', '--timeout', '5s',
               $script ? ('-s', $script) : (), "http://127.0.0.1:$port$PATH");
    open my $fh, '-|', @cmd or die "wrk: $!\n";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my %r = (raw => $out);
    ($r{rps}) = $out =~ /^Requests\/sec:\s+([\d.]+)/m;
    for my $p (qw(50 99)) {
        my ($v, $u) = $out =~ /^\s+$p%\s+([\d.]+)(us|ms|s|m)\b/m;
        $r{"p$p"} = defined $v ? to_ms($v, $u) : undef;
    }
    ($r{non2xx}) = $out =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    ($r{requests}) = $out =~ /(\d+) requests in/;
    my @err = $out =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/;
    $r{errors} = 0;
    $r{errors} += $_ for @err;
    $r{non2xx} //= 0;
    die "wrk failed against port $port:\n$out\n" if !defined $r{rps};
    return \%r;
}


# Measures each target once per round, in the same order each round, a warm-up before each
# measured run. Returns name -> { rps, p50, p99, cpu_pct, us_req (medians), non2xx, errors,
# requests (sums), failed (runs that did not finish, or whose workers died), runs }.
sub interleave {
    my ($targets, $script) = @_;
    my %res;
    for my $round (1 .. $K{rounds}) {
        for my $t (@$targets) {
            my $name = $t->{name};
            my ($r, $cpu, $t0, $c0);
            my $ok = eval {
                wrk($t->{port}, $K{warmup}, $script) if $K{warmup} > 0;
                $c0 = cpu_seconds(@{ $t->{pids} });
                $t0 = time;
                $r = wrk($t->{port}, $K{duration}, $script);
                $cpu = cpu_seconds(@{ $t->{pids} }) - $c0;
                1;
            };
            my @dead = grep { !kill 0, $_ } @{ $t->{pids} };
            if (!$ok || @dead) {
                $res{$name}{failed}++;
                printf "  round %d  %-28s FAILED: %s\n", $round, $name,
                    @dead ? "worker(s) @dead gone" : ($@ =~ s/\s+/ /gr);
                next;
            }
            $r->{cpu_pct} = 100 * $cpu / (time - $t0) / @{ $t->{pids} };
            $r->{us_req} = $r->{requests} ? 1e6 * $cpu / $r->{requests} : undef;
            push @{ $res{$name}{runs} }, $r;
            printf "  round %d  %-28s %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  "
                 . "worker CPU %3.0f%%, %5.1f us/req%s\n",
                $round, $name, $r->{rps}, $r->{p50} // -1, $r->{p99} // -1,
                $r->{cpu_pct}, $r->{us_req} // -1,
                ($r->{non2xx} || $r->{errors})
                    ? "  ($r->{non2xx} non-2xx, $r->{errors} socket errors)" : '';
        }
    }
    for my $t (@$targets) {
        my $e = $res{ $t->{name} } //= {};
        my $runs = $e->{runs} //= [];
        $e->{failed} //= 0;
        for my $k (qw(rps p50 p99 cpu_pct us_req)) {
            $e->{$k} = median(map { $_->{$k} } @$runs);
        }
        for my $k (qw(non2xx errors requests)) {
            my $sum = 0;
            $sum += $_->{$k} // 0 for @$runs;
            $e->{$k} = $sum;
        }
    }
    return \%res;
}


# Sends $n requests on one keep-alive connection; dies unless each gets a 200 within 5 s.
sub warm {
    my ($port, $n, $path) = @_;
    $path //= $PATH;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 5) or die "connect $port: $!\n";
    my $sel = IO::Select->new($s);
    my $read = sub {
        my ($deadline) = @_;
        my $buf = '';
        my $left = $deadline - time;
        return undef if $left <= 0 || !$sel->can_read($left);
        return sysread($s, $buf, 65536) ? $buf : undef;
    };
    for (1 .. $n) {
        print $s "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        my $deadline = time + 5;
        my $data = '';
        while ($data !~ /\r\n\r\n/) {
            my $buf = $read->($deadline) // last;
            $data .= $buf;
        }
        my ($status) = $data =~ m{^HTTP/1\.1 (\d+)};
        die "GET $path on port $port: " . ($status // 'no response') . "\n$data\n"
            if !$status || $status != 200;
        my ($len) = $data =~ /^content-length:\s*(\d+)/mi;
        die "GET $path on port $port: no Content-Length\n" if !defined $len;
        while (length($data) - index($data, "\r\n\r\n") - 4 < $len) {
            my $buf = $read->($deadline) // die "GET $path on port $port: body cut short\n";
            $data .= $buf;
        }
    }
    close $s;
}


# ---------------------------------------------------------------------------------------------
# memory

sub mem_of {
    my ($pid) = @_;
    my %m;
    my $status = slurp("/proc/$pid/status");
    for my $k (qw(VmRSS RssAnon RssFile RssShmem)) {
        ($m{$k}) = $status =~ /^$k:\s+(\d+) kB/m;
    }
    ($m{Pss}) = slurp("/proc/$pid/smaps_rollup") =~ /^Pss:\s+(\d+) kB/m;
    return \%m;
}


sub mb { defined $_[0] ? sprintf('%.1f', $_[0] / 1024) : '?' }


sub mem_line {
    my ($m) = @_;
    return sprintf '%s MB VmRSS (anon %s, file %s, shmem %s; Pss %s)', mb($m->{VmRSS}),
        mb($m->{RssAnon}), mb($m->{RssFile}), mb($m->{RssShmem}), mb($m->{Pss});
}


# ---------------------------------------------------------------------------------------------
# routes for the end-to-end routing run

# $n routes: route 1 is /bench/echo; from 2 on, odd ids are exact /svc/<i>/chat/completions
# and even ids prefixes /pfx/<i>/*. The load hits routes 1 to 10, which every size has.
sub routes_of {
    my ($n, $up_port) = @_;
    my @r = (route(1, $PATH, $up_port));
    for my $i (2 .. $n) {
        my $uri = $i % 2 ? "/svc/$i/chat/completions" : "/pfx/$i/*";
        push @r, route($i, $uri, $up_port);
    }
    return \@r;
}


# A wrk script cycling over paths every route set has: routes 1..10 of routes_of().
sub routes_script {
    my @paths = ($PATH);
    for my $i (2 .. 10) {
        push @paths, $i % 2 ? "/svc/$i/chat/completions" : "/pfx/$i/v1/models";
    }
    my $file = "$TMP/routes.lua";
    spew($file, "-- cycles over paths matched by exact and by prefix routes\n"
        . "local paths = { " . join(', ', map { "\"$_\"" } @paths) . " }\n"
        . "local i = 0\n"
        . "request = function()\n"
        . "    i = i % #paths + 1\n"
        . "    return wrk.format(\"GET\", paths[i])\n"
        . "end\n");
    return ($file, \@paths);
}


# ---------------------------------------------------------------------------------------------
# profile mode

sub profile {
    my $up = shift;
    my $lua_prof = "$TMP/lua-profile.txt";
    my $n = $ENV{BENCH_PROFILE_ROUTES} // 1;
    my ($script, $paths) = $n > 1 ? routes_script() : (undef, [$PATH]);
    my $s = start_gateway(routes => $n > 1 ? routes_of($n, $up->{port})
                                           : [ route(1, $PATH, $up->{port}) ],
                          access_log => 1, env => { SLUICE_BENCH_LUA_PROFILE => $lua_prof });
    warm($s->port, 2, $_) for @$paths;
    my ($worker) = $s->worker_pids;
    my $perf_ok = system('sh', '-c', 'perf stat -e task-clock true >/dev/null 2>&1') == 0;
    my $data = "$TMP/perf.data";
    my $secs = $K{prof_s};

    printf "profile: worker %d, %d route(s), access log on, wrk -t%d -c%d, perf for %ds\n",
        $worker, $n, $K{threads}, $K{conns}, $secs;
    wrk($s->port, $K{warmup}, $script) if $K{warmup} > 0;
    my $c0 = cpu_seconds($worker);
    my $wrk_pid = fork // die "fork: $!\n";
    if ($wrk_pid == 0) {
        open STDOUT, '>', "$TMP/profile-wrk.txt";
        exec('timeout', '-k', '5', $secs + 30, 'wrk', "-t$K{threads}", "-c$K{conns}",
             '-d' . ($secs + 2) . 's', '--timeout', '5s', $script ? ('-s', $script) : (),
             "http://127.0.0.1:" . $s->port . $PATH)
            or _exit(127);
    }
    sleep 1;
    if ($perf_ok) {
        # libc, libcurl and LuaJIT have no frame pointers: unwind with DWARF
        system('timeout', '-k', '5', $secs + 30, 'perf', 'record', '-q', '-e', 'cpu-clock',
               '-F', '499', '--call-graph', 'dwarf,16384', '-p', $worker, '-o', $data,
               '--', 'sleep', $secs);
    }
    waitpid($wrk_pid, 0);
    my $cpu = cpu_seconds($worker) - $c0;
    my ($requests) = slurp("$TMP/profile-wrk.txt") =~ /(\d+) requests in/;
    printf "load: %d requests, worker CPU %.1f s, %.1f us per request\n", $requests // 0, $cpu,
        $requests ? 1e6 * $cpu / $requests : -1;
    # the plugin rewrites its profile every 20,000 requests; make sure one lands
    wrk($s->port, 3, $script);

    if ($perf_ok && -s $data) {
        perf_summary($data);
        if ($ENV{BENCH_PERF_OUT}) {
            system('cp', $data, $ENV{BENCH_PERF_OUT});
            print "\nperf data copied to $ENV{BENCH_PERF_OUT}\n";
        }
    }
    else {
        print "perf is not usable here (perf stat -e task-clock failed); skipped\n";
    }
    print "\n== LuaJIT profiler (bench-trivial plugin, SLUICE_BENCH_LUA_PROFILE) ==\n";
    print -s $lua_prof ? slurp($lua_prof) : "no profile written\n";
    $s->stop;
}


# perf report lines "  12.34%  dso  symbol" -> [[pct, dso, sym], ...]
sub perf_rows {
    my ($data, @args) = @_;
    my @rows;
    for (qx(perf report -i $data --stdio -g none @args 2>/dev/null)) {
        next if /^#/ || !/\S/;
        my @f = /^\s*([\d.]+)%\s+(?:([\d.]+)%\s+)?(\S+)\s+\[[.k]\]\s+(.+?)\s*$/ or next;
        push @rows, [ $f[0], $f[1], $f[2], $f[3] ];
    }
    return @rows;
}


sub perf_summary {
    my ($data) = @_;
    my $short = sub { my $d = shift; $d =~ s{.*/}{}; $d =~ s/\.so[.\d]*$//; $d };

    # self time; the Debian LuaJIT and libcurl are stripped, so their internal functions
    # show as addresses: those are added up per library
    my (%lib, @named);
    for my $r (perf_rows($data, '--no-children', '--sort', 'dso,sym')) {
        my ($pct, undef, $dso, $sym) = @$r;
        if ($sym =~ /^0x[0-9a-f]+$/) {
            $lib{ $short->($dso) } += $pct;
        }
        else {
            push @named, [ $pct, $short->($dso), $sym ];
        }
    }
    push @named, map { [ $lib{$_}, $_, '(internal functions, no symbols)' ] } keys %lib;
    @named = sort { $b->[0] <=> $a->[0] } @named;
    print "\n== perf: top 15 by self time (cpu-clock samples of the worker) ==\n";
    printf "%6.2f%%  %-18s %s\n", @$_ for @named[0 .. ($#named < 14 ? $#named : 14)];

    print "\n== perf: by shared object ==\n";
    my @dso;
    for (qx(perf report -i $data --no-children --stdio -g none --sort dso 2>/dev/null)) {
        next if /^#/ || !/\S/;
        push @dso, sprintf("%7s  %s", $1, $short->($2)) if /^\s*([\d.]+%)\s+(\S+)/;
    }
    print join("\n", @dso[0 .. ($#dso < 9 ? $#dso : 9)]), "\n";

    # inclusive time of the host's own functions and of the library entry points it calls
    print "\n== perf: inclusive time (self + callees) of host functions and library entry "
        . "points ==\n";
    my %seen;
    my @inc = grep {
        $_->[3] =~ /^(sl_|on_|l_|resume|check_done|curl_|event_base_loop|event_process|
                     bufferevent_|evbuffer_|lua_|luaL_|epoll_wait|__GI_epoll_ctl|
                     __GI___writev|__libc_send|__libc_recv|__GI___readv|__ioctl|__poll|
                     malloc|__GI___libc_malloc|__GI___libc_free|cjson|fpconv)/x
            && $_->[3] !~ /^(sl_master_run|sl_worker_run)$/ && !$seen{ $_->[3] }++
    } perf_rows($data, '--children', '--sort', 'dso,sym');
    printf "%6.2f%% incl %6.2f%% self  %-16s %s\n", $_->[0], $_->[1] // 0, $short->($_->[2]),
        $_->[3] for @inc[0 .. ($#inc < 29 ? $#inc : 29)];
}


# ---------------------------------------------------------------------------------------------
# main

for my $tool (qw(nginx wrk timeout)) {
    die "core.pl: $tool not found in PATH\n" if system("command -v $tool >/dev/null 2>&1") != 0;
}
die "core.pl: build/sluice missing: run make first\n" if !-x "$ROOT/build/sluice";

my $LOAD_BEFORE = (split ' ', slurp('/proc/loadavg'))[0];
my $body = body_1k();
my $up = start_nginx('upstream', 'upstream.conf', BODY => $body);
warm($up->{port}, 3);

if ($PROFILE) {
    profile($up);
    exit 0;
}

my $wrk_desc = "wrk -t$K{threads} -c$K{conns} -d$K{duration}s --latency, warm-up $K{warmup}s, "
             . "$K{rounds} interleaved rounds, median";
printf "Sluice core benchmark: %s\nupstream: nginx, 1 worker, %d-byte JSON, keep-alive; "
     . "gateways: %d worker(s)%s; path %s\n\n", $wrk_desc, length $body, $K{workers},
     $K{pin} ? ', pinned to CPU 1 (wrk and upstream on CPU 0)' : '', $PATH;

# 1. throughput, latency and CPU per request, access log on and off
my (@targets, @sluices);
for my $log (qw(log nolog)) {
    next if $SKIP{$log};
    my $on = $log eq 'log' ? 'on' : 'off';
    my $ng = start_nginx("proxy-$log", 'proxy.conf', UPSTREAM_PORT => $up->{port},
                         WORKERS => $K{workers},
                         ACCESS_LOG => $log eq 'log'
                             ? "$TMP/proxy-$log/access.log combined buffer=64k flush=1s"
                             : 'off');
    $ng->{name} = "nginx proxy_pass, log $on";
    my $s = start_gateway(routes => [ route(1, $PATH, $up->{port}) ], access_log => $log eq 'log');
    warm($ng->{port}, 3);
    warm($s->port, 3);
    push @sluices, $s;
    push @targets, $ng, { name => "sluice, access log $on", port => $s->port,
                          pids => [ $s->worker_pids ] };
}

my $res = @targets ? interleave(\@targets) : {};

# 2. idle RSS per worker: fresh processes, a few requests, a second to settle
my %rss;
if (!$SKIP{rss}) {
    my $s = start_gateway(routes => [ route(1, $PATH, $up->{port}) ], access_log => 1);
    warm($s->port, 20);
    sleep 1;
    $rss{sluice} = [ map { mem_of($_) } $s->worker_pids ];
    $s->stop;
    my $ng = start_nginx('proxy-rss', 'proxy.conf', UPSTREAM_PORT => $up->{port},
                         WORKERS => $K{workers}, ACCESS_LOG => 'off');
    warm($ng->{port}, 20);
    sleep 1;
    $rss{nginx} = [ map { mem_of($_) } @{ $ng->{pids} } ];
}

# 3. end-to-end routing: the same ten paths with 10 and with BENCH_ROUTES routes
my ($routes_res, @rt);
if (!$SKIP{routes}) {
    my ($script, $paths) = routes_script();
    for my $n (10, $K{routes}) {
        my $t0 = time;
        my $s = start_gateway(routes => routes_of($n, $up->{port}), access_log => 0);
        my $start_s = time - $t0;
        warm($s->port, 2, $_) for @$paths;
        sleep 1;
        push @sluices, $s;
        push @rt, { name => "sluice, $n routes", port => $s->port, pids => [ $s->worker_pids ],
                    n => $n, start_s => $start_s, mem => mem_of(($s->worker_pids)[0]) };
    }
    print "\nend-to-end routing (access log off; wrk cycles over " . scalar(@$paths)
        . " paths, exact and prefix):\n";
    $routes_res = interleave(\@rt, $script);
}

my ($lines, $ok) = summary($body, $res, \@targets, \%rss, $routes_res, \@rt);
print "\n", "=" x 100, "\n", join("\n", @$lines), "\n", "=" x 100, "\n";
$_->stop for @sluices;
exit($ok ? 0 : 1);


sub fmt_row {
    my ($name, $r) = @_;
    return sprintf("%-28s all %d runs failed", $name, $r->{failed}) if !defined $r->{rps};
    my @notes;
    push @notes, "$r->{non2xx} non-2xx" if $r->{non2xx};
    push @notes, "$r->{errors} socket errors" if $r->{errors};
    push @notes, "$r->{failed} of $K{rounds} runs failed" if $r->{failed};
    return sprintf "%-28s %9.0f %8.3f %8.3f %7.0f%% %9.1f%s", $name, $r->{rps}, $r->{p50},
        $r->{p99}, $r->{cpu_pct} // -1, $r->{us_req} // -1,
        @notes ? '   (' . join(', ', @notes) . ')' : '';
}


sub summary {
    my ($body, $res, $targets, $rss, $routes_res, $rt) = @_;
    my $ok = 1;
    my $bar = sub { $ok &&= $_[0]; $_[0] ? 'PASS' : 'FAIL' };
    my $cpus = () = slurp('/proc/cpuinfo') =~ /^processor/mg;
    my ($nginx_v) = qx(nginx -v 2>&1) =~ m{nginx/(\S+)};
    my $head = sub {
        sprintf "%-28s %9s %8s %8s %8s %9s", $_[0], 'req/s', 'p50 ms', 'p99 ms', 'CPU',
                'us/req';
    };
    my @out = ("Sluice core benchmark (t/bench/core.pl), " . POSIX::strftime('%Y-%m-%d', gmtime)
               . " -- $wrk_desc",
               sprintf("host: Linux %s, %d CPUs, load average %s before, %s after; nginx %s",
                       (POSIX::uname())[2], $cpus, $LOAD_BEFORE,
                       (split ' ', slurp('/proc/loadavg'))[0], $nginx_v // '?'),
               sprintf("upstream: static nginx, 1 worker, %d-byte JSON, keep-alive; CPU and "
                       . "us/req: CPU time of the gateway's worker(s) per request",
                       length $body));
    if (@$targets) {
        push @out, '', $head->("$K{workers} worker(s)");
        push @out, fmt_row($_->{name}, $res->{ $_->{name} }) for @$targets;
        for my $on (qw(on off)) {
            my ($n, $s) = ($res->{"nginx proxy_pass, log $on"}, $res->{"sluice, access log $on"});
            next if !$n || !$s;
            if (!$s->{rps} || !$n->{rps}) {
                push @out, "ratio sluice/nginx, log $on: no result (bar >= 0.80x: "
                           . $bar->(0) . ')';
                next;
            }
            my $ratio = $s->{rps} / $n->{rps};
            push @out, sprintf("ratio sluice/nginx, log %-3s  req/s %.2fx (bar >= 0.80x: %s);"
                               . " CPU per request %.1fx nginx's", $on, $ratio,
                               $bar->($ratio >= 0.8 && !$s->{non2xx}),
                               ($s->{us_req} // 0) / ($n->{us_req} || 1));
        }
    }
    if (%$rss) {
        push @out, '';
        my $i = 0;
        for my $m (@{ $rss->{sluice} }) {
            push @out, sprintf("idle RSS, sluice worker %d:  %s  (bar <= 15 MB: %s)", $i++,
                               mem_line($m), $bar->(($m->{VmRSS} // 1e9) <= 15 * 1024));
        }
        $i = 0;
        push @out, sprintf("idle RSS, nginx worker %d:   %s", $i++, mem_line($_))
            for @{ $rss->{nginx} };
    }
    if ($routes_res) {
        push @out, '', $head->('end-to-end routing');
        push @out, fmt_row($_->{name}, $routes_res->{ $_->{name} }) for @$rt;
        my ($small, $big) = map { $routes_res->{ $_->{name} } } @$rt;
        my $ratio = $small->{rps} && $big->{rps} ? $small->{rps} / $big->{rps} : 1e9;
        push @out, sprintf("ratio 10 / %d routes: req/s %.2fx (bar <= 2.00x: %s); CPU per "
                           . "request %.2fx", $K{routes}, $ratio,
                           $bar->($ratio <= 2 && !$small->{non2xx} && !$big->{non2xx}),
                           ($big->{us_req} // 0) / ($small->{us_req} || 1));
        push @out, sprintf("with %d routes: start %.1f s; idle worker %s", $_->{n},
                           $_->{start_s}, mem_line($_->{mem})) for @$rt;
    }
    push @out, 'bars: ' . ($ok ? 'met' : 'MISSED');
    return (\@out, $ok);
}
