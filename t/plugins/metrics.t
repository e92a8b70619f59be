# Prometheus metrics for AI traffic: after chat, streaming, error and odd-model requests the
# exposition passes `promtool check metrics`, and carries apisix_llm_latency (type total, and
# ttft for streams only; not for errors), apisix_llm_prompt_tokens and _completion_tokens
# summed per model, apisix_llm_active_connections (1 during a stream, 0 after), and
# sluice_gateway_overhead_seconds; model labels are escaped and cut to 128 bytes; a plain
# (non-AI) route gets no LLM series.
use strict; use warnings; use lib 't/lib'; use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'chat', uri => '/v1/chat/completions',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(options => { model => undef }) } },
    { id => 'plain', uri => '/static.json',
      upstream => { type => 'roundrobin', nodes => { '127.0.0.1:' . $llm->port => 1 } } },
    { id => 'dead', uri => '/dead',
      upstream => { type => 'roundrobin', nodes => { '127.0.0.1:' . free_port() => 1 } } },
]);
my $TRUE = JSON::PP::true;
my $PROMTOOL = -x '/usr/bin/promtool' ? '/usr/bin/promtool' : 'promtool';

sub chat {
    my ($model, %o) = @_;
    return post_json($sluice, '/v1/chat/completions',
                     { model => $model, messages => [{ role => 'user', content => 'a b c' }],
                       ($o{stream} ? (stream => $TRUE) : ()) },
                     headers => $o{headers} || {});
}

sub scrape {
    my $r = http_req($sluice->metrics_url('/apisix/prometheus/metrics'), 'GET', '');
    return $r->{body} // '';
}

# value of the series of $name whose labels include every pair of %want
sub value {
    my ($text, $name, %want) = @_;
    my $sum;
    for my $line (split /\n/, $text) {
        next if $line !~ /^\Q$name\E\{(.*)\} (\S+)$/;
        my ($labels, $v) = ($1, $2);
        my $ok = 1;
        for my $k (keys %want) {
            $ok = 0, last if index($labels, qq{$k="$want{$k}"}) < 0;
        }
        $sum += $v if $ok;
    }
    return $sum;
}

chat('gpt-a') for 1 .. 3;                         # 3 x (3 prompt, 3 completion)
chat('gpt-b', stream => 1, headers => { 'x-mock-events' => 10 }) for 1 .. 2;
chat('gpt-a', headers => { 'x-mock-status' => 500 });
chat(qq{we"ird\\mo\ndel});
chat('m' x 300);
http_req($sluice, 'GET', '/static.json');
$sluice->wait_access_log(9);
sleep 0.2;
my $m = scrape();

subtest 'promtool check metrics' => sub {
    plan skip_all => 'promtool not installed' if !grep { -x "$_/promtool" } split /:/, $ENV{PATH};
    open my $p, '|-', "$PROMTOOL check metrics >/tmp/promtool.$$ 2>&1" or die "promtool: $!";
    print $p $m;
    close $p;
    my $rc = $? >> 8;
    my $out = do { local (@ARGV, $/) = "/tmp/promtool.$$"; <> } // '';
    unlink "/tmp/promtool.$$";
    is $rc, 0, 'promtool accepts the exposition' or diag $out;
    unlike $out, qr/error/i, 'no errors reported';
};

subtest 'apisix_llm_latency' => sub {
    like $m, qr/^# TYPE apisix_llm_latency histogram$/m, 'a histogram';
    is value($m, 'apisix_llm_latency_count', type => 'total', llm_model => 'gpt-a',
             request_type => 'ai_chat'), 3, 'total: 3 chats (the 500 is not observed)';
    is value($m, 'apisix_llm_latency_count', type => 'total', llm_model => 'gpt-b',
             request_type => 'ai_stream'), 2, 'total: 2 streams';
    is value($m, 'apisix_llm_latency_count', type => 'ttft', llm_model => 'gpt-b'), 2,
        'ttft: 2 streams';
    ok !defined value($m, 'apisix_llm_latency_count', type => 'ttft', llm_model => 'gpt-a'),
        'no ttft for non-streaming requests';
    is value($m, 'apisix_llm_latency_bucket', type => 'total', llm_model => 'gpt-a',
             le => '+Inf'), 3, '+Inf bucket = count';
    my $labels = join ',', 'type="total"', 'route_id="chat"', 'service_id=""', 'consumer=""',
        'node="ai-proxy-openai-compatible"', 'request_type="ai_chat"',
        'request_llm_model="gpt-a"', 'llm_model="gpt-a"', 'le="1"';
    like $m, qr/^apisix_llm_latency_bucket\{\Q$labels\E\} \d+$/m,
        'APISIX\'s label set, in order';
};

subtest 'token counters' => sub {
    is value($m, 'apisix_llm_prompt_tokens', llm_model => 'gpt-a'), 9, 'prompt: 3 x 3';
    is value($m, 'apisix_llm_completion_tokens', llm_model => 'gpt-a'), 9, 'completion: 3 x 3';
    is value($m, 'apisix_llm_prompt_tokens', llm_model => 'gpt-b',
             request_type => 'ai_stream'), 6, 'stream prompt: 2 x 3';
    is value($m, 'apisix_llm_completion_tokens', llm_model => 'gpt-b'), 20,
        'stream completion: 2 x 10';
    is value($m, 'apisix_llm_completion_tokens_dist_count', llm_model => 'gpt-b'), 2,
        'per-request distribution';
    ok !defined value($m, 'apisix_llm_prompt_tokens', route_id => 'plain'),
        'no LLM series for a plain route';
};

subtest 'labels: escaped and cut' => sub {
    like $m, qr/llm_model="we\\"ird\\\\mo\\ndel"/, 'quote, backslash and newline escaped';
    like $m, qr/llm_model="m{128}"/, 'a long model name cut to 128 bytes';
    unlike $m, qr/m{129}/, 'not longer';
};

subtest 'sluice_gateway_overhead_seconds' => sub {
    like $m, qr/^# TYPE sluice_gateway_overhead_seconds histogram$/m, 'a histogram';
    my $count = value($m, 'sluice_gateway_overhead_seconds_count', route => 'chat');
    is $count, 8, 'one observation per AI request';
    my $sum = value($m, 'sluice_gateway_overhead_seconds_sum', route => 'chat');
    cmp_ok $sum, '>', 0, 'time was spent';
    cmp_ok $sum / $count, '<', 0.05,
        sprintf('mean overhead %.0f us (< 50 ms)', 1e6 * $sum / $count);
    ok defined value($m, 'sluice_gateway_overhead_seconds_bucket', le => '0.0001'),
        'sub-millisecond buckets';
};

subtest 'apisix_llm_active_connections follows open streams' => sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $sluice->port)
        or die "connect: $!";
    my $body = '{"model":"gpt-live","stream":true,"messages":[{"role":"user","content":"x"}]}';
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           . "x-mock-events: 20\r\nx-mock-chunk-delay-ms: 100\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";
    ok wait_for(sub { (value(scrape(), 'apisix_llm_active_connections', llm_model => 'gpt-live')
                       // 0) == 1 }, 3), 'gauge 1 while streaming';
    close $s;
    ok wait_for(sub { defined value(scrape(), 'apisix_llm_active_connections',
                                    llm_model => 'gpt-live')
                      && value(scrape(), 'apisix_llm_active_connections',
                               llm_model => 'gpt-live') == 0 }, 3), 'back to 0 after';
    my $all = scrape();
    my @v = $all =~ /^apisix_llm_active_connections\{[^}]*\} (-?\d+)$/mg;
    is_deeply [ grep { $_ != 0 } @v ], [], 'every series at 0';
};

subtest 'HTTP status counts the AI requests' => sub {
    is value($m, 'apisix_http_status', code => '500', route => 'chat'), 1, 'the 500';
    is value($m, 'apisix_http_status', code => '200', route => 'chat',
             request_type => 'ai_stream'), 2, 'the streams';
    is value($m, 'apisix_http_status', code => '500', route => 'chat',
             response_source => 'upstream'), 1, 'the provider\'s 500 came from upstream';
};

subtest 'response_source: upstream, nginx (no answer upstream), apisix (no route)' => sub {
    my $before = value(scrape(), 'apisix_http_status', code => '200', route => 'plain',
                       response_source => 'upstream') // 0;
    is http_req($sluice, 'GET', '/static.json')->{status}, 200, 'proxied';
    is http_req($sluice, 'GET', '/dead')->{status}, 502, 'upstream refused';
    is http_req($sluice, 'GET', '/nowhere')->{status}, 404, 'no route';
    my $t;
    wait_for(sub { $t = scrape(); value($t, 'apisix_http_status', code => '404') }, 5);
    is value($t, 'apisix_http_status', code => '200', route => 'plain',
             response_source => 'upstream'), $before + 1, '200 from the upstream';
    is value($t, 'apisix_http_status', code => '502', route => 'dead',
             response_source => 'nginx'), 1, '502 made by the gateway after trying upstream';
    is value($t, 'apisix_http_status', code => '404', response_source => 'apisix'), 1,
        '404 made by the gateway without going upstream';
};

done_testing;
