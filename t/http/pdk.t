# The Lua plugin API as a user's plugin sees it (t/plugins-fixtures/test-pdk.lua):
# pdk.request getters and setters (headers and body reach the upstream changed), get_json,
# ctx.var http_*/arg_*, pdk.response headers and status in header_filter, a body_filter that
# rewrites chunks, pdk.shared counting across two workers, pdk.http from access, pdk.timer.sleep
# (yields: other requests are not held up), pdk.re, pdk.log, and the log phase running after
# the response.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_sluice start_mock_llm http_req post_json free_port wait_for
                    repo_root decode_json);

my $llm = start_mock_llm();
my $node = '127.0.0.1:' . $llm->port;
my $up = { type => 'roundrobin', nodes => { $node => 1 } };
my $fixtures = repo_root() . '/t/plugins-fixtures';

sub r {
    my ($uri, $conf) = @_;
    (my $id = $uri) =~ s/\W+/-/g;
    return { id => "r$id", uri => $uri, plugins => { 'test-pdk' => $conf }, upstream => $up };
}

my @routes = (
    r('/echo/request', { mode => 'request' }),
    r('/echo/strict', { mode => 'strict_json' }),
    r('/echo/upper', { mode => 'upper' }),
    r('/echo/status', { mode => 'status' }),
    r('/echo/strip-set', { mode => 'strip_set' }),
    r('/echo/fresh', { mode => 'fresh' }),
    r('/pdk/plan', { mode => 'plan', url => $llm->url('/echo/planned') }),
    r('/echo/strip-tables', { mode => 'strip_tables' }),
    r('/pdk/shared', { mode => 'shared' }),
    r('/pdk/http', { mode => 'http', url => $llm->url('/echo/from-plugin') }),
    r('/pdk/http-dead', { mode => 'http', url => 'http://127.0.0.1:' . free_port() . '/x' }),
    r('/pdk/http-slow', { mode => 'http', url => $llm->url('/echo/slow?mock_delay_ms=3000') }),
    r('/pdk/sleep', { mode => 'sleep', sleep => 0.5 }),
    r('/pdk/re/*', { mode => 're' }),
    r('/echo/log', { mode => 'log' }),
    r('/pdk/peek', { mode => 'peek' }),
    { id => 'plain', uri => '/echo/plain', upstream => $up },
);
my %node_conf = (plugins => ['test-pdk'], plugin_paths => [$fixtures]);
my $sluice = start_sluice(routes => \@routes, config => \%node_conf);

subtest 'pdk.request and ctx.var' => sub {
    $llm->clear;
    my $res = post_json($sluice, '/echo/request?x=1&y=2', { model => 'm1', messages => [] },
                        headers => { 'Content-Type' => 'application/json', 'X-Foo' => 'bar',
                                     'X-Remove-Me' => 'gone' });
    is $res->{status}, 200, 'status';
    my $seen = eval { decode_json($res->{headers}{'x-seen'} // '') } || {};
    is $seen->{method}, 'POST', 'get_method';
    is $seen->{uri}, '/echo/request?x=1&y=2', 'get_uri';
    is $seen->{path}, '/echo/request', 'get_path';
    is $seen->{args_x}, '1', 'get_args';
    is $seen->{arg_x}, '1', 'ctx.var.arg_x';
    is $seen->{http_x_foo}, 'bar', 'ctx.var.http_x_foo';
    is $seen->{header_x_foo}, 'bar', 'header() is case-insensitive';
    is $seen->{headers_x_foo}, 'bar', 'headers() has lowercase names';
    is $seen->{json_model}, 'm1', 'get_json';
    is $seen->{json_after_set}, 'yes', 'get_json after set_body sees the new body';
    cmp_ok $seen->{body_len}, '>', 10, 'get_body';
    is $seen->{remote_addr}, '127.0.0.1', 'ctx.var.remote_addr';
    is $seen->{route_id}, 'r-echo-request', 'ctx.var.route_id';

    my $req = $llm->last_request;
    is $req->{headers}{'x-added'}, 'added', 'set_header reached the upstream';
    ok !exists $req->{headers}{'x-remove-me'}, 'set_header(nil) removed it upstream';
    is $req->{headers}{'x-foo'}, 'bar', 'other headers kept';
    is $req->{json}{extra}, 'yes', 'set_body reached the upstream';
    is $req->{json}{model}, 'm1', 'rest of the body kept';
    is $req->{headers}{'content-length'}, length $req->{body}, 'Content-Length matches new body';
    is $res->{headers}{'x-upstream-status'}, '200', 'get_upstream_status in header_filter';
    like $res->{headers}{'x-upstream-ct'} // '', qr{application/json}, 'response.get_header';
};

subtest 'get_json on a bad body' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'POST', '/echo/strict', body => '{not json',
                       headers => { 'Content-Type' => 'application/json' });
    is $res->{status}, 400, 'plugin answered 400';
    like $res->{json}{error} // '', qr/invalid JSON/i, 'err says invalid JSON';
    is scalar @{ $llm->requests }, 0, 'nothing upstream';
    $res = post_json($sluice, '/echo/strict', { model => 'ok' });
    is_deeply $res->{json}, { model => 'ok' }, 'a good body decodes';
};

subtest 'body_filter rewrites every chunk' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/echo/upper?q=hello');
    is $res->{status}, 200, 'status';
    like $res->{body}, qr{"PATH":"/ECHO/UPPER"}, 'body upper-cased';
    unlike $res->{body}, qr/[a-z]/, 'no lower case left';
    is $llm->last_request->{query}, 'q=hello', 'upstream saw the request unchanged';

    my $big = http_req($sluice, 'GET', '/echo/upper/../upper?pad=' . ('a' x 3000));
    my $bytes = http_req($sluice, 'GET', '/echo/upper?mock_chunk_split=7');
    ok $bytes->{complete}, 'chunked response complete';
};

subtest 'response.set_status in header_filter' => sub {
    my $res = http_req($sluice, 'GET', '/echo/status');
    is $res->{status}, 203, 'status changed';
    is $res->{json}{path}, '/echo/status', 'body kept';
};

for my $form (qw(set tables)) {
    subtest "response.clear_headers with the $form" => sub {
        for my $case (['X-Drop-Me: 1', 'x-drop-me', 0], ['X-PRE-Thing: 1', 'x-pre-thing', 0],
                      ['X-Keep-Me: 1', 'x-keep-me', 1], ['X-Pre: 1', 'x-pre', 1],
                      ['x-drop-me-not: 1', 'x-drop-me-not', 1]) {
            my ($header, $name, $kept) = @$case;
            my $res = http_req($sluice, 'GET', "/echo/strip-$form",
                               headers => { 'X-Mock-Header' => $header });
            is $res->{status}, 200, "$header: status";
            is defined $res->{headers}{$name} ? 1 : 0, $kept,
               "$header: " . ($kept ? 'kept' : 'removed');
            is $res->{json}{path}, "/echo/strip-$form", "$header: body kept";
        }
    };
}

subtest 'pdk.upstream.set with a header plan' => sub {
    for my $n (1 .. 3) {            # the plan is made once: every request gets it
        my $res = http_req($sluice, 'GET', '/pdk/plan',
                           headers => { 'X-Foo' => 'client', 'X-Remove-Me' => 'client',
                                        'X-Keep' => 'client' });
        is $res->{status}, 200, "request $n: status";
        my $h = $res->{json}{headers} || {};
        is $h->{'x-plan'}, 'yes', "request $n: the plan's header is set";
        is $h->{'x-foo'}, 'from-plan', "request $n: the client's X-Foo replaced (any case)";
        ok !exists $h->{'x-remove-me'}, "request $n: a false entry removes the client's";
        is $h->{'x-keep'}, 'client', "request $n: other client headers pass";
        is $res->{json}{method}, 'POST', "request $n: the target's method";
        is $res->{json}{path}, '/echo/planned', "request $n: the target's url";
    }
};

subtest 'ctx and ctx.var are fresh on every request (they are reused)' => sub {
    my %seen;
    for my $id (1 .. 30) {
        my $res = http_req($sluice, 'GET', "/echo/fresh?id=$id");
        is $res->{status}, 200, "request $id" if $id == 1;
        $seen{ $res->{headers}{'x-fresh'} // 'missing' }++;
        is $res->{headers}{'x-fresh-var'}, $id, "request $id sees its own var"
            if $id % 10 == 0;
    }
    is_deeply \%seen, { clean => 30 }, 'no value of an earlier request in 30 requests';
};

subtest 'pdk.http.request from access' => sub {
    $llm->clear;
    my $res = http_req($sluice, 'GET', '/pdk/http');
    is $res->{status}, 200, 'status';
    is $res->{json}{status}, 200, 'res.status';
    like $res->{json}{content_type} // '', qr{application/json}, 'res.headers lowercased';
    my $inner = eval { decode_json($res->{json}{body} // '') } || {};
    is $inner->{path}, '/echo/from-plugin', 'res.body';
    my ($req) = grep { $_->{path} eq '/echo/from-plugin' } @{ $llm->requests };
    ok $req, 'the mock got the plugin\'s request';
    is $req && $req->{method}, 'POST', 'method';
    is $req && $req->{headers}{'x-from-plugin'}, 'yes', 'headers';
    is $req && $req->{body}, '{"from":"plugin"}', 'body';
};

subtest 'pdk.http.request failures are values, not throws' => sub {
    my $res = http_req($sluice, 'GET', '/pdk/http-dead');
    is $res->{status}, 502, 'connect failure returned nil, err';
    ok length($res->{json}{error} // ''), "err: $res->{json}{error}";
    my $t0 = time;
    $res = http_req($sluice, 'GET', '/pdk/http-slow');
    is $res->{status}, 502, 'timeout returned nil, err';
    cmp_ok time - $t0, '<', 2, 'after the 1 s timeout';
};

subtest 'pdk.timer.sleep yields: parallel sleeps overlap, others are not held up' => sub {
    my $t0 = time;
    my @socks = map {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port,
                                      Proto => 'tcp', Timeout => 3) or die $@;
        syswrite $s, "GET /pdk/sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        $s;
    } 1 .. 4;
    my $fast_t0 = time;
    my $fast = http_req($sluice, 'GET', '/echo/plain');
    my $fast_took = time - $fast_t0;
    is $fast->{status}, 200, 'a request during the sleeps';
    cmp_ok $fast_took, '<', 0.3, sprintf('was not held up (%.3fs)', $fast_took);
    my @got;
    for my $s (@socks) {
        my $buf = '';
        my $sel = IO::Select->new($s);
        while ($sel->can_read(3)) { sysread($s, $buf, 4096, length $buf) or last }
        push @got, $buf;
    }
    my $all = time - $t0;
    is scalar(grep { m{\AHTTP/1\.1 200 } } @got), 4, 'four sleeps answered 200';
    cmp_ok $all, '>=', 0.45, 'each slept';
    cmp_ok $all, '<', 1.2, sprintf('four 0.5 s sleeps overlapped (%.2fs in all)', $all);
};

subtest 'pdk.re' => sub {
    my $res = http_req($sluice, 'GET', '/pdk/re/abc-123');
    is $res->{status}, 200, 'status';
    is_deeply $res->{json}, { m0 => '/pdk/re/abc-123', m1 => 'abc', m2 => '123', none => JSON::PP::true(),
                              replaced => 'a#b#c#', n => 3, from => 7, to => 9, ci => 'HeLLo' },
        'match, find, gsub, flags';
};

subtest 'log phase runs after the response, with the final status; pdk.log' => sub {
    my $res = http_req($sluice, 'GET', '/echo/log?id=a1&mock_status=201');
    is $res->{status}, 201, 'status';
    my $v;
    ok wait_for(sub { $v = http_req($sluice, 'GET', '/pdk/peek?id=a1')->{json}{value} }, 3),
        'log phase wrote to the shared dict';
    is $v, '201/201', 'it saw status and upstream_status';
    ok $sluice->wait_error_log(qr/says 42 for a1/, 3), 'pdk.log.warn in error.log';
    like $sluice->error_log, qr/^.*\[warn\].*test-pdk.*says 42 for a1.*$/m,
        'the line names the plugin';
};

subtest 'pdk.shared counts across two workers' => sub {
    my $two = start_sluice(workers => 2, routes => \@routes, config => \%node_conf);
    ok wait_for(sub { $two->worker_pids == 2 }, 3), 'two workers';
    my (@counts, %workers);
    for my $round (1 .. 4) {
        my @socks = map {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $two->port,
                                          Proto => 'tcp', Timeout => 3) or die $@;
            $s;
        } 1 .. 5;
        syswrite $_, "GET /pdk/shared HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" for @socks;
        for my $s (@socks) {
            my $buf = '';
            my $sel = IO::Select->new($s);
            while ($sel->can_read(3)) { sysread($s, $buf, 4096, length $buf) or last }
            my ($body) = $buf =~ /\r\n\r\n(.*)\z/s;
            my $j = eval { decode_json($body) } || {};
            push @counts, $j->{count} // 0;
            $workers{ $j->{worker} // '?' }++;
        }
    }
    is_deeply [ sort { $a <=> $b } @counts ], [1 .. 20], 'twenty distinct counts 1..20';
    diag 'requests per worker: ' . join ', ', map { "$_=$workers{$_}" } sort keys %workers;
    cmp_ok scalar(keys %workers), '==', 2, 'both workers counted into the same zone';
};

done_testing;
