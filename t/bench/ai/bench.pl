#!/usr/bin/env perl
# bench.pl -- the ai-proxy benchmark (run by t/bench/ai.sh). A canned provider (nginx serving
# t/bench/ai/chat.json and the 66-word stream t/bench/ai/stream-66.sse from files) is reached
# three ways with the same 1 KB chat body: directly, through nginx proxy_pass (which does none
# of the JSON work), and through Sluice's ai-proxy (body parsed, model set, stream_options
# added, usage read from every response, access log with the llm_* fields, metrics).
#
#   1. throughput: wrk -s post.lua (POST, 1 KB body), non-streaming and streaming, the
#      targets interleaved round by round, median of the rounds;
#   2. latency at concurrency 1: latency.c (client and provider in one process, one clock)
#      directly and through each gateway; added = through - direct;
#   3. Sluice's own sluice_gateway_overhead_seconds over the throughput runs.
# Bars: ai-proxy req/s >= 0.8x nginx proxy_pass, non-streaming and streaming (exact usage of
# the 66-word answer checked in the access log); added p99 at c=1 <= 200 us; added per-chunk
# p99 <= 100 us. Exit 1 when a bar is missed.
#
# Knobs (environment): BENCH_THREADS (1) BENCH_CONNS (32) BENCH_DURATION (10, seconds)
# BENCH_WARMUP (2) BENCH_ROUNDS (3) BENCH_WORKERS (1) BENCH_LAT_N (2000 requests, 200 streams)
# BENCH_LAT_CPU (1: the CPU the latency tool and the gateways share for the c=1 runs)
# BENCH_PIN (unset; "1" puts the gateways on CPU 1, wrk and the provider on CPU 0)
# BENCH_FLOOR ("1" adds a gateway running t/bench/plugins/bench-ai-floor.lua to the
# non-streaming runs) BENCH_SKIP (comma list of: chat, stream, latency). Every process started here is killed at
# exit; every wrk and latency run is bounded by timeout(1).
use strict;
use warnings;
use FindBin qw($Bin);
use lib "$Bin/../../lib";
use lib "$Bin/../lib";
use SluiceBench qw(spawn can_connect slurp spew child_pids pin cpu_seconds to_ms median);
use File::Copy qw(copy);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(setpgid _exit WNOHANG);
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice free_port wait_for repo_root http_req);

my $ROOT = repo_root();
chdir $ROOT or die "chdir $ROOT: $!\n";

my %K = (
    threads  => $ENV{BENCH_THREADS}  // 1,
    conns    => $ENV{BENCH_CONNS}    // 32,
    duration => $ENV{BENCH_DURATION} // 10,
    warmup   => $ENV{BENCH_WARMUP}   // 2,
    rounds   => $ENV{BENCH_ROUNDS}   // 3,
    workers  => $ENV{BENCH_WORKERS}  // 1,
    lat_n    => $ENV{BENCH_LAT_N}    // 2000,
    lat_cpu  => $ENV{BENCH_LAT_CPU}  // 1,
    pin      => $ENV{BENCH_PIN} // '',
    floor    => $ENV{BENCH_FLOOR} // '',
);
my ($PIN_GW, $PIN_LOAD) = $K{pin} ? (1, 0) : ();
my %SKIP = map { $_ => 1 } split /,/, ($ENV{BENCH_SKIP} // '');
my $LATENCY_BIN = "$ROOT/build/bench/ai_latency";
my $CHAT = '/v1/chat/completions';
my $STREAM = '/stream/v1/chat/completions';
my $TMP = tempdir('sluice-ai-bench-XXXXXX', TMPDIR => 1, CLEANUP => 0);
my @NGINX;

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
# processes (as t/bench/core.pl)


sub render {
    my ($template, %v) = @_;
    my @lines = split /^/, slurp("$Bin/$template");
    die "missing template t/bench/ai/$template\n" if !@lines;
    for (grep { !/^\s*#/ } @lines) {
        s/\@(\w+)\@/exists $v{$1} ? $v{$1} : die "unset \@$1\@ in $template\n"/ge;
    }
    return join '', @lines;
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
    pin($name eq 'provider' ? $PIN_LOAD : $PIN_GW, $pid, @workers);
    return { name => $name, port => $port, pid => $pid, prefix => $prefix, pids => \@workers };
}


# ---------------------------------------------------------------------------------------------
# the request

# A 1 KB (exactly 1024 bytes) chat request; $stream adds "stream":true in the same length.
sub body_1k {
    my ($stream) = @_;
    my $head = '{"model":"gpt-4o-mini",' . ($stream ? '"stream":true,' : '')
             . '"temperature":0.7,"messages":[{"role":"system","content":"You are a helpful '
             . 'assistant. Answer briefly."},{"role":"user","content":"';
    my $tail = '"}]}';
    my $text = 'Tell me a story about a lighthouse keeper and the ships she guides home. ';
    my $fill = 1024 - length($head) - length($tail);
    my $content = substr($text x (1 + int($fill / length $text)), 0, $fill);
    return $head . $content . $tail;
}


sub lua_long_string {
    my ($s) = @_;
    my $eq = '=';
    $eq .= '=' while index($s, "]$eq]") >= 0;
    return "[$eq\[$s]$eq]";
}


sub post_script {
    my ($name, $body) = @_;
    my $file = "$TMP/$name.lua";
    spew($file, "-- POSTs a 1 KB chat body (t/bench/ai/bench.pl)\n"
        . "wrk.method = \"POST\"\n"
        . "wrk.body = " . lua_long_string($body) . "\n"
        . "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
        . "wrk.headers[\"Authorization\"] = \"Bearer sk-client-bench\"\n");
    return $file;
}


# one POST on a fresh connection; returns (status, headers text, body)
sub post_once {
    my ($port, $path, $body) = @_;
    my $r = http_req($port, 'POST', $path, body => $body,
                     headers => { 'Content-Type' => 'application/json' }, timeout => 5);
    return $r;
}


# ---------------------------------------------------------------------------------------------
# wrk


sub wrk {
    my ($port, $path, $secs, $script) = @_;
    my @cmd = (defined $PIN_LOAD ? ('taskset', '-c', $PIN_LOAD) : (),
               'timeout', '-k', '5', $secs + 30, 'wrk', "-t$K{threads}", "-c$K{conns}",
               "-d${secs}s", '--latency', '--timeout', '5s', '-s', $script,
               "http://127.0.0.1:$port$path");
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


sub interleave {
    my ($targets, $path, $script) = @_;
    my %res;
    for my $round (1 .. $K{rounds}) {
        for my $t (@$targets) {
            wrk($t->{port}, $path, $K{warmup}, $script) if $K{warmup} > 0;
            my @pids = @{ $t->{pids} || [] };
            my $c0 = cpu_seconds(@pids);
            my $t0 = time;
            my $r = wrk($t->{port}, $path, $K{duration}, $script);
            my $cpu = cpu_seconds(@pids) - $c0;
            $r->{cpu_pct} = @pids ? 100 * $cpu / (time - $t0) / @pids : undef;
            $r->{us_req} = @pids && $r->{requests} ? 1e6 * $cpu / $r->{requests} : undef;
            push @{ $res{ $t->{name} }{runs} }, $r;
            printf "  round %d  %-26s %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms%s%s\n",
                $round, $t->{name}, $r->{rps}, $r->{p50} // -1, $r->{p99} // -1,
                defined $r->{us_req} ? sprintf('  worker CPU %3.0f%%, %5.1f us/req',
                                               $r->{cpu_pct}, $r->{us_req}) : '',
                ($r->{non2xx} || $r->{errors})
                    ? "  ($r->{non2xx} non-2xx, $r->{errors} socket errors)" : '';
        }
    }
    for my $name (keys %res) {
        my $runs = $res{$name}{runs};
        for my $k (qw(rps p50 p99 cpu_pct us_req)) {
            $res{$name}{$k} = median(map { $_->{$k} } @$runs);
        }
        for my $k (qw(non2xx errors requests)) {
            my $sum = 0;
            $sum += $_->{$k} // 0 for @$runs;
            $res{$name}{$k} = $sum;
        }
    }
    return \%res;
}


# ---------------------------------------------------------------------------------------------
# latency at c=1

# runs latency.c against $connect; returns { measure => {p50, p90, p99, max, n}, stalls => n,
# failed => reason }. A run that fails is reported, not fatal: the other measures go on.
sub latency_run {
    my ($mode, $connect, $path, $body_file, $reply_file, $n, @extra) = @_;
    my $err = "$TMP/latency-stderr.txt";
    my @cmd = ('taskset', '-c', $K{lat_cpu},
               'timeout', '-k', '5', 300, $LATENCY_BIN, '--mode', $mode,
               '--listen', $connect->{lat_port}, '--connect', $connect->{port},
               '--path', $path, '--body', $body_file, '--reply', $reply_file,
               '-n', $n, '--warmup', int($n / 10) + 5, @extra);
    my $pid = open my $fh, '-|' // die "fork: $!\n";
    if (!$pid) {
        open STDERR, '>', $err;
        exec @cmd or _exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my %r;
    for my $line (split /\n/, $out) {
        if ($line =~ /^stalls n=(\d+)/) {
            $r{stalls} = $1;
            next;
        }
        my ($name, $rest) = $line =~ /^(\w+) (.*) us$/ or next;
        $r{$name} = { map { split /=/ } split ' ', $rest };
    }
    if ($?) {
        my @e = grep { /\S/ } split /\n/, slurp($err);
        my $stalls = grep { /stall at/ } @e;
        $r{failed} = ($e[-1] // 'exit ' . ($? >> 8)) . ($stalls ? " ($stalls stalls)" : '');
        print "  latency ($mode via $connect->{name}) FAILED: $r{failed}\n";
    }
    return \%r;
}


# ---------------------------------------------------------------------------------------------
# main

for my $tool (qw(nginx wrk timeout gcc)) {
    die "ai bench: $tool not found in PATH\n" if system("command -v $tool >/dev/null 2>&1") != 0;
}
die "ai bench: build/sluice missing: run make first\n" if !-x "$ROOT/build/sluice";
die "ai bench: $LATENCY_BIN missing: t/bench/ai.sh builds it\n" if !-x $LATENCY_BIN;

# the canned provider's files, at the paths the routes use
my $fix = "$TMP/fixtures";
make_path("$fix/v1/chat", "$fix/stream/v1/chat");
copy("$Bin/chat.json", "$fix/v1/chat/completions") or die "copy: $!\n";
copy("$Bin/stream-66.sse", "$fix/stream/v1/chat/completions") or die "copy: $!\n";
# nginx workers run as nobody: the files must be readable past the private temp dir
chmod 0711, $TMP;
chmod 0755, $fix, "$fix/v1", "$fix/v1/chat", "$fix/stream", "$fix/stream/v1",
    "$fix/stream/v1/chat";
chmod 0644, "$fix/v1/chat/completions", "$fix/stream/v1/chat/completions";
my $sse = slurp("$Bin/stream-66.sse");
my $n_events = () = $sse =~ /\n\n/g;
my ($sse_usage) = $sse =~ /"usage":(\{[^}]*\})\}\n\n(?:data: \[DONE\]\n\n)?\z/;
my $usage = decode_json($sse_usage // '{}');

my $chat_body = body_1k(0);
my $stream_body = body_1k(1);
spew("$TMP/chat-body.json", $chat_body);
spew("$TMP/stream-body.json", $stream_body);
my $chat_script = post_script('chat', $chat_body);
my $stream_script = post_script('stream', $stream_body);

my $provider = start_nginx('provider', 'upstream.conf', FIXDIR => $fix);
my $lat_port = free_port();
my $ng = start_nginx('nginx-proxy', 'proxy.conf', UPSTREAM_PORT => $provider->{port},
                     LAT_PORT => $lat_port, WORKERS => $K{workers});
$ng->{name} = 'nginx proxy_pass';
$ng->{lat_port} = $lat_port;

my $up = "http://127.0.0.1:$provider->{port}";
my $ai = sub {
    my ($endpoint) = @_;
    return { 'ai-proxy' => { provider => 'openai',
                             auth => { header => { Authorization => 'Bearer sk-gateway' } },
                             options => { model => 'gpt-4o-mini' },
                             override => { endpoint => $endpoint } } };
};
my $sluice = start_sluice(
    workers => $K{workers},
    timeout => 60,
    routes  => [
        { id => 'chat', uri => $CHAT, plugins => $ai->($up) },
        { id => 'stream', uri => $STREAM, plugins => $ai->("$up$STREAM") },
        { id => 'lat', uri => "/lat$CHAT",
          plugins => $ai->("http://127.0.0.1:$lat_port$CHAT") },
    ],
    config  => { log_level => 'warn', plugins => ['ai-proxy'] },
);
pin($PIN_GW, $sluice->pid, $sluice->worker_pids);
my $sl = { name => 'sluice ai-proxy', port => $sluice->port, pids => [ $sluice->worker_pids ],
           lat_port => $lat_port };

# the same gateway without the plugin (plain proxy routes): what the core costs by itself
my $node = sub { { type => 'roundrobin', nodes => { "127.0.0.1:$_[0]" => 1 } } };
my $plain = start_sluice(
    workers => $K{workers},
    timeout => 60,
    routes  => [
        { id => 'chat', uri => $CHAT, upstream => $node->($provider->{port}) },
        { id => 'stream', uri => $STREAM, upstream => $node->($provider->{port}) },
        { id => 'lat', uri => "/lat$CHAT", upstream => $node->($lat_port) },
    ],
    config  => { log_level => 'warn', plugins => ['ai-proxy'] },
);
pin($PIN_GW, $plain->pid, $plain->worker_pids);
my $sp = { name => 'sluice proxy, no plugin', port => $plain->port,
           pids => [ $plain->worker_pids ], lat_port => $lat_port };
# BENCH_FLOOR=1: a third gateway, the least an AI proxy must do (t/bench/plugins/
# bench-ai-floor.lua), non-streaming only: where a Lua plugin on this host's helpers starts
my $fl;
if ($K{floor}) {
    my $floor = start_sluice(
        workers => $K{workers},
        timeout => 60,
        routes  => [ { id => 'chat', uri => $CHAT,
                       plugins => { 'bench-ai-floor' => { url => "$up$CHAT" } } } ],
        config  => { log_level => 'warn', plugins => ['bench-ai-floor'],
                     plugin_paths => ["$Bin/../plugins"] },
    );
    pin($PIN_GW, $floor->pid, $floor->worker_pids);
    $fl = { name => 'sluice AI floor plugin', port => $floor->port,
            pids => [ $floor->worker_pids ], lat_port => $lat_port,
            gateway => $floor };       # kept: the gateway stops when its object goes
}
my $direct = { name => 'direct (no gateway)', port => $provider->{port}, pids => [] };

# correctness first: every target answers the same JSON / the whole stream
for my $t ($direct, $ng, $sp, $sl) {
    my $r = post_once($t->{port}, $CHAT, $chat_body);
    die "$t->{name}: chat: status $r->{status}\n$r->{body}\n"
        if $r->{status} != 200 || !$r->{json} || !$r->{json}{usage};
    $r = post_once($t->{port}, $STREAM, $stream_body);
    my $ev = () = ($r->{body} // '') =~ /\n\n/g;
    die "$t->{name}: stream: status $r->{status}, $ev events (want $n_events)\n"
        if $r->{status} != 200 || $ev != $n_events;
}
my $log = $sluice->wait_access_log(2);
my ($sline) = grep { $_->{route_id} eq 'stream' } @$log;
my $usage_ok = $sline && $sline->{llm_completion_tokens} == $usage->{completion_tokens}
               && $sline->{llm_prompt_tokens} == $usage->{prompt_tokens}
               && !$sline->{llm_usage_estimated};
printf "checked: the same answers from every target; Sluice logged the stream's usage %s "
     . "(%s prompt, %s completion)\n", $usage_ok ? 'exactly' : 'WRONGLY',
     $sline ? $sline->{llm_prompt_tokens} : '?', $sline ? $sline->{llm_completion_tokens} : '?';

my $wrk_desc = "wrk -t$K{threads} -c$K{conns} -d$K{duration}s, warm-up $K{warmup}s, "
             . "$K{rounds} interleaved rounds, median";
printf "\nai-proxy benchmark: %s; 1024-byte chat body; gateways %d worker(s)%s\n",
    $wrk_desc, $K{workers}, $K{pin} ? ', pinned to CPU 1 (wrk and provider on CPU 0)' : '';

my (%res, %lat);
if (!$SKIP{chat}) {
    print "\nnon-streaming (POST $CHAT, provider answers " . length(slurp("$Bin/chat.json"))
        . " bytes of JSON):\n";
    $res{chat} = interleave([ $direct, $ng, $sp, ($fl ? $fl : ()), $sl ], $CHAT, $chat_script);
}
if (!$SKIP{stream}) {
    print "\nstreaming (POST $STREAM, provider streams $n_events events, "
        . length($sse) . " bytes, usage in the last chunk):\n";
    $res{stream} = interleave([ $direct, $ng, $sp, $sl ], $STREAM, $stream_script);
}

# Sluice's own view of its overhead over the runs so far
my $m = http_req($sluice->metrics_url('/apisix/prometheus/metrics'), 'GET', '')->{body} // '';
my %ovh;
for my $rt (qw(ai_chat ai_stream)) {
    my $labels = qr/\{route="\w+",request_type="$rt"\}/;
    my ($sum) = $m =~ /^sluice_gateway_overhead_seconds_sum$labels (\S+)/m;
    my ($cnt) = $m =~ /^sluice_gateway_overhead_seconds_count$labels (\S+)/m;
    $ovh{$rt} = $cnt ? 1e6 * $sum / $cnt : undef;
}

if (!$SKIP{latency}) {
    my $n = $K{lat_n};
    my $ns = int($n / 10) || 1;
    my $direct_lat = { name => 'direct', port => $lat_port, lat_port => $lat_port };
    # one CPU for the tool and every gateway process: each hop is a context switch, not the
    # wake-up of an idle CPU (tens to hundreds of us on a VM, and varying run to run)
    pin($K{lat_cpu}, $ng->{pid}, @{ $ng->{pids} }, $sluice->pid, $sluice->worker_pids,
        $plain->pid, $plain->worker_pids);
    print "\nlatency at concurrency 1 (latency.c: one keep-alive client, provider in the same "
        . "process, one clock; $n requests, $ns streams of $n_events events; tool and gateways "
        . "on CPU $K{lat_cpu}):\n";
    for my $t ($direct_lat, $ng, $sp, $sl) {
        my $path = $t == $direct_lat ? $CHAT : "/lat$CHAT";
        $lat{ $t->{name} }{chat} = latency_run('chat', $t, $path, "$TMP/chat-body.json",
                                               "$Bin/chat.json", $n);
        # through a gateway each stream gets a new provider connection (--close 1; see the
        # keep-alive check below); directly, the one connection is both ends and stays
        $lat{ $t->{name} }{stream} = latency_run('stream', $t, $path, "$TMP/stream-body.json",
                                                 "$Bin/stream-66.sse", $ns, '--close',
                                                 $t == $direct_lat ? 0 : 1);
        my ($c, $s) = ($lat{ $t->{name} }{chat}, $lat{ $t->{name} }{stream});
        my $v = sub { defined $_[0] ? sprintf('%7.1f', $_[0]) : '   fail' };
        printf "  %-24s rtt p50 %s p99 %s | stream ttfb p50 %s p99 %s | per-chunk p50 %s "
             . "p99 %s us%s\n", $t->{name}, $v->($c->{rtt}{p50}), $v->($c->{rtt}{p99}),
             $v->($s->{ttfb}{p50}), $v->($s->{ttfb}{p99}), $v->($s->{gap}{p50}),
             $v->($s->{gap}{p99}),
             ($c->{stalls} || $s->{stalls})
                 ? sprintf('  (stalls: %d chat, %d stream)', $c->{stalls} // 0,
                           $s->{stalls} // 0) : '';
    }

    # Streams on a kept-alive provider connection that answers at once: a gateway that loses
    # the wake-up for a response head read while it was still sending the request holds the
    # response back; each such stall costs 1 s and is counted (20 streams per gateway).
    print "\nkeep-alive stream check (20 streams, provider connection reused, answer at once):\n";
    for my $t ($ng, $sp, $sl) {
        my $path = "/lat$CHAT";
        my $r = latency_run('stream', $t, $path, "$TMP/stream-body.json", "$Bin/stream-66.sse",
                            20, '--close', 0, '--warmup', 0);
        $lat{ $t->{name} }{ka_stalls} = $r->{stalls} // ($r->{failed} ? 'failed' : 0);
        printf "  %-24s stalls: %s\n", $t->{name}, $lat{ $t->{name} }{ka_stalls};
    }
}

my ($lines, $ok) = summary();
print "\n", "=" x 100, "\n", join("\n", @$lines), "\n", "=" x 100, "\n";
$sluice->stop;
$plain->stop;
exit($ok ? 0 : 1);


sub fmt_row {
    my ($name, $r) = @_;
    my @notes;
    push @notes, "$r->{non2xx} non-2xx" if $r->{non2xx};
    push @notes, "$r->{errors} socket errors" if $r->{errors};
    return sprintf "  %-26s %9.0f %8.3f %8.3f %s%s", $name, $r->{rps}, $r->{p50}, $r->{p99},
        defined $r->{us_req} ? sprintf('%6.0f%% %8.1f', $r->{cpu_pct}, $r->{us_req})
                             : sprintf('%7s %8s', '-', '-'),
        @notes ? '   (' . join(', ', @notes) . ')' : '';
}


sub summary {
    my $ok = 1;
    my $bar = sub { $ok &&= $_[0]; $_[0] ? 'PASS' : 'FAIL' };
    my $cpus = () = slurp('/proc/cpuinfo') =~ /^processor/mg;
    my ($nginx_v) = qx(nginx -v 2>&1) =~ m{nginx/(\S+)};
    my @out = ("Sluice ai-proxy benchmark (t/bench/ai.sh), " . POSIX::strftime('%Y-%m-%d', gmtime)
               . " -- $wrk_desc",
               sprintf("host: Linux %s, %d CPUs; nginx %s; provider: nginx serving canned "
                       . "files (1 worker); 1024-byte chat body; gateways %d worker(s)",
                       (POSIX::uname())[2], $cpus, $nginx_v // '?', $K{workers}));
    for my $kind (qw(chat stream)) {
        my $res = $res{$kind} or next;
        push @out, '', sprintf("  %-26s %9s %8s %8s %7s %8s", $kind eq 'chat'
                               ? 'non-streaming' : "streaming ($n_events events)", 'req/s',
                               'p50 ms', 'p99 ms', 'CPU', 'us/req');
        push @out, fmt_row($_, $res->{$_})
            for grep { $res->{$_} } ('direct (no gateway)', 'nginx proxy_pass',
                                     'sluice proxy, no plugin', 'sluice AI floor plugin',
                                     'sluice ai-proxy');
        my ($n, $s) = ($res->{'nginx proxy_pass'}, $res->{'sluice ai-proxy'});
        my $ratio = $s->{rps} / $n->{rps};
        my $fl = $res->{'sluice AI floor plugin'};
        push @out, sprintf("  ratio AI floor plugin/nginx proxy_pass: %.2fx (no bar: where a Lua "
                           . "plugin on the host's helpers starts)", $fl->{rps} / $n->{rps})
            if $fl;
        my $pl = $res->{'sluice proxy, no plugin'};
        push @out, sprintf("  ratio ai-proxy/nginx proxy_pass: %.2fx (bar >= 0.80x%s: %s); "
                           . "CPU per request %.1fx nginx's", $ratio,
                           $kind eq 'stream' ? ', exact usage' : '',
                           $bar->($ratio >= 0.8 && !$s->{non2xx} && !$s->{errors}
                                  && ($kind ne 'stream' || $usage_ok)),
                           ($s->{us_req} // 0) / ($n->{us_req} || 1));
        push @out, sprintf("  ai-proxy's own cost: %.1f us CPU per request over Sluice's plain "
                           . "proxy (%.2fx its req/s)", ($s->{us_req} // 0) - ($pl->{us_req} // 0),
                           $s->{rps} / ($pl->{rps} || 1)) if $pl;
    }
    if (%lat) {
        my ($d, $n, $p, $s) = map { $lat{$_} } ('direct', 'nginx proxy_pass',
                                                 'sluice proxy, no plugin', 'sluice ai-proxy');
        push @out, '', '  latency at c=1 (us)                 p50      p99   added p50  added p99';
        my $row = sub {
            my ($label, $kind, $measure, $t, $name) = @_;
            my $v = $t->{$kind}{$measure};
            my $b = $d->{$kind}{$measure};
            return sprintf("  %-32s failed: %s", "$label, $name", $t->{$kind}{failed} // '?')
                if !$v || !$b || !defined $v->{p50} || !defined $b->{p50};
            return sprintf "  %-32s %8.1f %8.1f %10.1f %10.1f%s", "$label, $name", $v->{p50},
                $v->{p99}, $v->{p50} - $b->{p50}, $v->{p99} - $b->{p99},
                $t->{$kind}{stalls} ? "  ($t->{$kind}{stalls} stalls of 1 s, repeated)" : '';
        };
        for my $m ([ 'request rtt', 'chat', 'rtt' ], [ 'stream ttfb', 'stream', 'ttfb' ],
                   [ 'per-chunk', 'stream', 'gap' ]) {
            push @out, sprintf("  %-32s %8.1f %8.1f", "$m->[0], direct",
                               $d->{ $m->[1] }{ $m->[2] }{p50} // -1,
                               $d->{ $m->[1] }{ $m->[2] }{p99} // -1);
            push @out, $row->(@$m, $n, 'nginx');
            push @out, $row->(@$m, $p, 'sluice, no plugin');
            push @out, $row->(@$m, $s, 'sluice ai-proxy');
        }
        my $diff = sub {
            my ($kind, $measure) = @_;
            my ($v, $b) = ($s->{$kind}{$measure}, $d->{$kind}{$measure});
            return undef if !$v || !$b || !defined $v->{p99} || !defined $b->{p99}
                            || $s->{$kind}{stalls};
            return $v->{p99} - $b->{p99};
        };
        my $added = $diff->('chat', 'rtt');
        my $gap = $diff->('stream', 'gap');
        my $f = sub { defined $_[0] ? sprintf('%.0f us', $_[0]) : 'not measured (failed/stalled)' };
        push @out, sprintf("  streams held back on a reused provider connection (of 20): "
                           . "nginx %s, sluice no plugin %s, sluice ai-proxy %s",
                           map { $_->{ka_stalls} // '-' } $n, $p, $s);
        push @out, sprintf("  added p99 at c=1: %s (bar <= 200 us: %s); added per-chunk p99: "
                           . "%s (bar <= 100 us: %s)", $f->($added),
                           $bar->(defined $added && $added <= 200), $f->($gap),
                           $bar->(defined $gap && $gap <= 100));
    }
    if (grep { defined } values %ovh) {
        push @out, '', sprintf("  sluice_gateway_overhead_seconds, mean over the throughput runs: "
                               . "non-streaming %s us, streaming %s us",
                               map { defined $_ ? sprintf('%.0f', $_) : '-' }
                               @ovh{qw(ai_chat ai_stream)});
    }
    push @out, 'bars: ' . ($ok ? 'met' : 'MISSED');
    return (\@out, $ok);
}
