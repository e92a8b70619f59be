# ai-proxy: a provider that refuses the connection, times out, answers 4xx/429/5xx, sends
# invalid JSON or cuts its answer short. Each gets the documented status and body (the
# provider's own error body and status for 4xx/429/5xx, with its headers), the access log and
# error log say what happened, usage is estimated where the provider billed a partial answer,
# and after a burst of failures the worker has no leaked connections, descriptors or
# active-connection counts and answers at once.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time sleep);
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $dead = free_port();             # nothing listens here
my $TRUE = JSON::PP::true;
my $sluice = start_sluice(routes => [
    { id => 'chat', uri => '/v1/chat/completions',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(timeout => 600) } },
    { id => 'conv', uri => '/conv/v1/messages',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(provider => 'openai',
          override => { endpoint => 'http://127.0.0.1:' . $llm->port
                                    . '/v1/chat/completions?mock_invalid_json=1' }) } },
    { id => 'dead', uri => '/dead',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(
          override => { endpoint => "http://127.0.0.1:$dead/v1/chat/completions" }) } },
]);

my $chat = { messages => [{ role => 'user', content => 'one two three' }] };
my $stream = { %$chat, stream => $TRUE };

my $asked = 0;
sub ask {
    my ($path, $body, %h) = @_;
    $asked++;
    return post_json($sluice, $path, $body, headers => \%h, max_time => 20);
}

# the access-log line of the last request (the log is buffered: wait for it)
sub last_line {
    my ($route) = @_;
    my $log = $sluice->wait_access_log($asked);
    is scalar @$log, $asked, 'one access-log line per request';
    my $line = $log->[$asked - 1] || {};
    is $line->{route_id}, $route, "route_id $route";
    return $line;
}

sub worker_fds {
    my ($pid) = $sluice->worker_pids;
    opendir my $d, "/proc/$pid/fd" or return -1;
    return scalar grep { /^\d+$/ } readdir $d;
}

# warm up: one good request of each kind, then count the worker's descriptors
ask('/v1/chat/completions', $chat);
ask('/v1/chat/completions', $stream);
my ($worker) = $sluice->worker_pids;
my $fds0 = worker_fds();

subtest 'provider refuses the connection' => sub {
    my $r = ask('/dead', $chat);
    is $r->{status}, 502, '502 (APISIX: 500 without a body)';
    like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
    like $r->{json} && $r->{json}{error_msg}, qr/^upstream failed: .*connect/i,
        'error_msg says why';
    my $l = last_line('dead');
    is $l->{status}, 502, 'logged 502';
    like $l->{error} // '', qr/connect/i, 'access log: error says what happened';
    is $l->{llm_time_to_first_token}, 0, 'no TTFT';
    is $l->{llm_total_tokens}, 0, 'no tokens';
    ok $sluice->wait_error_log(qr/upstream 127\.0\.0\.1:$dead failed: .*connect/i),
        'error log names the provider address';
};

subtest 'provider does not answer within timeout' => sub {
    $llm->clear;
    my $t0 = time;
    my $r = ask('/v1/chat/completions', $chat, 'x-mock-delay-ms' => 3000);
    my $took = time - $t0;
    is $r->{status}, 504, 'status 504';
    is_deeply $r->{json}, { error_msg => 'upstream timed out' }, 'JSON body';
    cmp_ok $took, '>=', 0.5, 'waited for the timeout (600 ms)';
    cmp_ok $took, '<', 2, sprintf('but not for the provider (%.2fs)', $took);
    my $l = last_line('chat');
    is $l->{status}, 504, 'logged';
    like $l->{error} // '', qr/timed out/, 'access log says timed out';
    ok wait_for(sub { my ($x) = grep { $_->{path} eq '/v1/chat/completions' }
                                @{ $llm->responses }; $x && $x->{outcome} eq 'client_closed' },
                4), 'the provider request was abandoned';
};

subtest 'streaming provider stalls mid-stream past timeout' => sub {
    my $t0 = time;
    my $r = ask('/v1/chat/completions', $stream, 'x-mock-events' => 4,
                'x-mock-chunk-delay-ms' => 2000);
    cmp_ok time - $t0, '<', 3, 'the stall is cut off (timeout applies per read)';
    is $r->{status}, 200, 'status was already sent';
    like $r->{body}, qr/"w1"/, 'first event relayed';
    my $l = last_line('chat');
    is $l->{llm_stream_aborted}, 'read_error', 'llm_stream_aborted=read_error';
    like $l->{error} // '', qr/timed out/, 'error says timed out';
    ok $l->{llm_usage_estimated}, 'usage estimated';
    cmp_ok $l->{llm_completion_tokens}, '>=', 1, 'the delta seen is counted';
};

for my $case ([400, 'bad request'], [401, 'unauthorized'], [403, 'forbidden'],
              [404, 'not found']) {
    my ($st, $what) = @$case;
    subtest "provider answers $st ($what): passed through" => sub {
        my $r = ask('/v1/chat/completions', $chat, 'x-mock-status' => $st);
        is $r->{status}, $st, "status $st";
        is_deeply $r->{json}, { error => { message => 'mock error', type => 'mock', code => $st } },
            'the provider\'s body';
        is $r->{headers}{'x-request-id'}, 'mock-' . $llm->last_request->{id},
            'provider request id passed back';
        my $l = last_line('chat');
        is $l->{upstream_status}, $st, 'upstream_status logged';
        is $l->{llm_total_tokens}, 0, 'no tokens';
        ok !$l->{llm_usage_estimated}, 'nothing estimated for an error';
    };
}

subtest 'provider answers 429: status, body, Retry-After, rate-limit headers' => sub {
    my $r = ask('/v1/chat/completions', $chat, 'x-mock-status' => 429);
    is $r->{status}, 429, 'status 429';
    like $r->{headers}{'content-type'} // '', qr{^application/json}, 'provider Content-Type';
    is $r->{json}{error}{code}, 429, 'provider body';
    is $r->{headers}{'retry-after'}, '1', 'Retry-After passed back';
    is $r->{headers}{'x-ratelimit-remaining-requests'}, '0', 'x-ratelimit-* passed back';
    my $l = last_line('chat');
    is $l->{status}, 429, 'logged 429';
    cmp_ok $l->{llm_time_to_first_token}, '>', 0, 'TTFT = time to the error (as APISIX)';
};

for my $st (500, 502, 503) {
    subtest "provider answers $st to a streaming request" => sub {
        my $r = ask('/v1/chat/completions', $stream, 'x-mock-status' => $st,
                    'x-mock-content-type' => 'application/problem+json');
        is $r->{status}, $st, "status $st";
        is $r->{headers}{'content-type'}, 'application/problem+json',
            'the provider\'s Content-Type';
        is $r->{json} && $r->{json}{error}{code}, $st, 'the provider\'s body, not SSE';
        my $l = last_line('chat');
        is $l->{status}, $st, 'logged';
        is $l->{request_type}, 'ai_stream', 'still an ai_stream request';
        ok !$l->{llm_usage_estimated}, 'no estimate for a refused request';
    };
}

subtest 'provider sends invalid JSON (non-streaming)' => sub {
    my $r = ask('/v1/chat/completions', $chat, 'x-mock-invalid-json' => 1);
    is $r->{status}, 200, 'the provider\'s status';
    is $r->{body}, 'this is {not json', 'its body, untouched';
    my $l = last_line('chat');
    is $l->{error}, 'provider response is not valid JSON', 'access log says so';
    is $l->{llm_total_tokens}, 0, 'no usage';
    ok $sluice->wait_error_log(qr/provider response is not valid JSON/), 'error log says so';
};

subtest 'provider sends invalid JSON in a stream' => sub {
    my $r = ask('/v1/chat/completions', $stream, 'x-mock-invalid-json' => 1);
    is $r->{status}, 200, 'status';
    like $r->{body}, qr/\Adata: \{this is not json\n\ndata: \[DONE\]\n\n\z/, 'relayed as sent';
    my $l = last_line('chat');
    ok $l->{llm_usage_estimated}, 'usage estimated';
    cmp_ok $l->{llm_prompt_tokens}, '>', 0, 'prompt estimated from the request';
    ok $sluice->wait_error_log(qr/AI usage estimated \(provider reported none\)/),
        'error log says why';
};

subtest 'a converted stream that yields nothing: 502 (Anthropic client, OpenAI provider)' => sub {
    my $r = ask('/conv/v1/messages', { model => 'claude', max_tokens => 10, stream => $TRUE,
                                      messages => [{ role => 'user', content => 'hi' }] });
    is $r->{status}, 502, 'status 502';
    like $r->{body}, qr/^streaming response completed without producing any output/,
        'the reference\'s message';
    my $l = last_line('conv');
    like $l->{error} // '', qr/without producing any output/, 'access log says so';
    is $l->{llm_stream_aborted}, 'no_output', 'llm_stream_aborted=no_output';
};

subtest 'provider cuts the stream' => sub {
    $llm->clear;
    my $r = ask('/v1/chat/completions', $stream, 'x-mock-events' => 10, 'x-mock-cut' => 4);
    is $r->{status}, 200, 'status';
    my @words = grep { defined } map { $_->{json} && $_->{json}{choices}
                                       && $_->{json}{choices}[0]{delta}{content} }
                @{ $r->{events} || [] };
    is scalar @words, 4, 'the 4 events sent were relayed';
    ok !grep({ $_->{data} eq '[DONE]' } @{ $r->{events} || [] }), 'no [DONE]';
    ok !$r->{complete}, 'the client can tell the stream was cut (no chunked terminator)';
    my $l = last_line('chat');
    is $l->{llm_stream_aborted}, 'read_error', 'llm_stream_aborted=read_error';
    like $l->{error} // '', qr/transfer closed|outstanding|cut short/, 'error says the transfer broke';
    ok $l->{llm_usage_estimated}, 'usage estimated';
    is $l->{llm_completion_tokens}, 4, 'one token per delta seen';
    cmp_ok $l->{llm_prompt_tokens}, '>=', 3, 'prompt estimated from the request';
};

subtest 'provider cuts a non-streaming answer' => sub {
    my $r = ask('/v1/chat/completions', $chat, 'x-mock-events' => 40, 'x-mock-cut' => 1);
    ok !$r->{complete} || !$r->{json}, 'the client does not get a whole JSON body';
    ok !$r->{complete}, 'the response is not framed as complete';
    my $l = last_line('chat');
    is $l->{llm_stream_aborted}, 'read_error', 'llm_stream_aborted=read_error';
    ok $l->{llm_usage_estimated}, 'usage estimated (the provider billed it)';
    cmp_ok $l->{llm_completion_tokens}, '>', 0, 'completion estimated from the bytes';
};

subtest 'a burst of failures leaks nothing' => sub {
    my @bad = (['/dead', $chat], ['/v1/chat/completions', $chat, 'x-mock-status' => 500],
               ['/v1/chat/completions', $stream, 'x-mock-cut' => 2],
               ['/v1/chat/completions', $chat, 'x-mock-invalid-json' => 1],
               ['/v1/chat/completions', $stream, 'x-mock-status' => 429]);
    for (1 .. 10) {
        ask(@$_) for @bad;
    }
    my $t0 = time;
    my $r = ask('/v1/chat/completions', $chat);
    is $r->{status}, 200, 'a good request works';
    cmp_ok time - $t0, '<', 0.5, 'and is answered at once';
    is join(',', $sluice->worker_pids), $worker, 'the same worker (no crash, no respawn)';
    my $fds;
    ok wait_for(sub { $fds = worker_fds(); $fds <= $fds0 + 4 }, 5),
        "worker descriptors back to normal ($fds0 -> $fds)";
    my $m = http_req($sluice->metrics_url('/apisix/prometheus/metrics'), 'GET', '');
    my @active = ($m->{body} // '') =~ /^apisix_llm_active_connections\{[^}]*\} (-?\d+)/mg;
    ok @active, 'gauge present';
    is_deeply [ grep { $_ != 0 } @active ], [], 'every active-connection gauge is back to 0';
    unlike $sluice->error_log, qr/\[(?:crit|alert|emerg)\]|traceback|stack/i,
        'no Lua error or crash logged';
};

done_testing;
