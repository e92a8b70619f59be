# The mock LLM upstream (t/mock/llm.pl) on its own, without the gateway: every endpoint and
# control the gateway's tests rely on, checked with HTTP::Tiny, Sluice::Test's client and raw
# sockets, plus what it records.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use HTTP::Tiny;
use IO::Socket::INET;
use File::Temp ();
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Sluice::Test qw(start_mock_llm start_sluice admin_put admin_req post_json http_req raw_http
                    wait_for free_port parse_sse);

my $llm = start_mock_llm();
my $json = JSON::PP->new->utf8->canonical;
my $true = JSON::PP::true;

sub chat_body {
    my (%extra) = @_;
    return { model => 'gpt-x', messages => [ { role => 'system', content => 'be brief' },
                                             { role => 'user', content => 'say hi please' } ],
             %extra };
}

sub data_events {
    my ($res) = @_;
    return [ grep { $_->{data} ne '' } @{ $res->{events} || [] } ];
}


subtest 'non-stream chat: answer, model echo, usage from word counts, headers' => sub {
    my $http = HTTP::Tiny->new(timeout => 5);
    my $r = $http->post($llm->url('/v1/chat/completions'), {
        headers => { 'Content-Type' => 'application/json' },
        content => $json->encode(chat_body()) });
    is $r->{status}, 200, 'status';
    like $r->{headers}{'content-type'}, qr{application/json}, 'content type';
    like $r->{headers}{'x-request-id'}, qr/\Amock-\d+\z/, 'x-request-id';
    is $r->{headers}{'openai-processing-ms'}, 1, 'openai-processing-ms';
    is $r->{headers}{'x-ratelimit-limit-requests'}, 100, 'x-ratelimit-limit-requests';
    my $d = $json->decode($r->{content});
    is $d->{object}, 'chat.completion', 'object';
    ok $d->{id}, 'has an id';
    is $d->{model}, 'gpt-x', 'model echoed';
    is $d->{choices}[0]{message}{role}, 'assistant', 'role';
    is $d->{choices}[0]{message}{content}, 'Hello from mock', 'content';
    is $d->{choices}[0]{finish_reason}, 'stop', 'finish_reason';
    is_deeply $d->{usage}, { prompt_tokens => 5, completion_tokens => 3, total_tokens => 8 },
        'usage: 2 + 3 prompt words, 3 answer words';

    my $r2 = post_json($llm, '/chat/completions', { messages => [] });
    is $r2->{json}{model}, 'mock-model', 'default model';
    is $r2->{json}{usage}{prompt_tokens}, 1, 'prompt_tokens at least 1';

    for my $path (qw(/api/v1/chat/completions /v1beta/openai/chat/completions
                     /openai/deployments/x/chat/completions)) {
        my $r3 = post_json($llm, $path, chat_body());
        is $r3->{json}{object}, 'chat.completion', "chat at $path";
    }

    my $parts = post_json($llm, '/v1/chat/completions', { messages => [ { role => 'user',
        content => [ { type => 'text', text => 'one two' }, { type => 'text', text => 'three' } ]
    } ] });
    is $parts->{json}{usage}{prompt_tokens}, 3, 'content parts counted';

    my $bad = post_json($llm, '/v1/chat/completions', '{"messages": [');
    is $bad->{status}, 400, 'invalid JSON request body -> 400';
    ok $bad->{json}{error}{message}, 'with an OpenAI-style error';
};


subtest 'streaming chat: one event per word, finish chunk, usage chunk, [DONE]' => sub {
    my $res = post_json($llm, '/v1/chat/completions',
        chat_body(stream => $true, stream_options => { include_usage => $true }));
    is $res->{status}, 200, 'status';
    like $res->{headers}{'content-type'}, qr{\Atext/event-stream}, 'event stream';
    ok $res->{chunked}, 'chunked transfer encoding';
    ok $res->{complete}, 'terminating chunk';
    my @ev = @{ data_events($res) };
    is scalar @ev, 6, '3 content + finish + usage + [DONE]';
    is_deeply [ map { $_->{json}{choices}[0]{delta}{content} } @ev[0 .. 2] ],
              [ 'Hello', ' from', ' mock' ], 'deltas concatenate to the answer';
    is $ev[0]{json}{choices}[0]{delta}{role}, 'assistant', 'first delta carries the role';
    is $ev[0]{json}{object}, 'chat.completion.chunk', 'chunk object';
    is $ev[0]{json}{model}, 'gpt-x', 'model echoed';
    is $ev[3]{json}{choices}[0]{finish_reason}, 'stop', 'finish chunk';
    is_deeply $ev[4]{json}{choices}, [], 'usage chunk has no choices';
    is_deeply $ev[4]{json}{usage}, { prompt_tokens => 5, completion_tokens => 3,
                                     total_tokens => 8 }, 'usage chunk';
    is $ev[5]{data}, '[DONE]', '[DONE] last';
    like $res->{body}, qr/data: \[DONE\]\n\n\z/, 'body ends with the [DONE] event';

    my $no_usage = post_json($llm, '/v1/chat/completions', chat_body(stream => $true));
    my @ev2 = @{ data_events($no_usage) };
    is scalar @ev2, 5, 'without include_usage: no usage chunk';
    ok !(grep { ref $_->{json} && $_->{json}{usage} } @ev2), 'no usage anywhere';

    my $five = post_json($llm, '/v1/chat/completions', chat_body(stream => $true),
                         headers => { 'x-mock-events' => 5 });
    my @ev3 = @{ data_events($five) };
    is scalar @ev3, 7, 'x-mock-events 5: 5 content + finish + [DONE]';
    is join('', map { $_->{json}{choices}[0]{delta}{content} // '' } @ev3[0 .. 4]),
       'w1 w2 w3 w4 w5', 'words w1..w5';

    my $answer = post_json($llm, '/v1/chat/completions', chat_body(),
                           headers => { 'x-mock-answer' => 'one two three four' });
    is $answer->{json}{choices}[0]{message}{content}, 'one two three four', 'x-mock-answer';
    is $answer->{json}{usage}{completion_tokens}, 4, 'completion tokens follow the answer';
};


subtest 'streaming events are flushed one by one' => sub {
    my $res = post_json($llm, '/v1/chat/completions', chat_body(stream => $true),
                        headers => { 'x-mock-chunk-delay-ms' => 150 });
    my @ev = @{ data_events($res) };
    is scalar @ev, 5, 'all events';
    my $gap = $ev[1]{t} - $ev[0]{t};
    cmp_ok $gap, '>=', 0.12, "events arrive apart ($gap s)";
    cmp_ok $ev[-1]{t} - $ev[0]{t}, '>=', 0.5, 'the whole stream is spread out';
};


subtest 'anthropic messages: JSON and the SSE event sequence' => sub {
    my $body = { model => 'claude-x', system => 'you are terse', max_tokens => 10,
                 messages => [ { role => 'user', content => 'hi there' } ] };
    my $res = post_json($llm, '/v1/messages', $body);
    is $res->{status}, 200, 'status';
    is $res->{json}{type}, 'message', 'type';
    is $res->{json}{role}, 'assistant', 'role';
    is_deeply $res->{json}{content}, [ { type => 'text', text => 'Hello from mock' } ],
        'content block';
    is_deeply $res->{json}{usage}, { input_tokens => 5, output_tokens => 3 },
        'usage: system + message words, answer words';
    is $res->{json}{stop_reason}, 'end_turn', 'stop_reason';

    my $s = post_json($llm, '/anthropic/v1/messages', { %$body, stream => $true });
    my @ev = @{ $s->{events} };
    is_deeply [ map { $_->{event} } @ev ],
        [ qw(message_start content_block_start content_block_delta content_block_delta
             content_block_delta content_block_stop message_delta message_stop) ],
        'event sequence';
    is_deeply [ map { $_->{json}{type} } @ev ], [ map { $_->{event} } @ev ],
        'data type matches event name';
    is $ev[0]{json}{message}{usage}{input_tokens}, 5, 'message_start input_tokens';
    is_deeply $ev[2]{json}{delta}, { type => 'text_delta', text => 'Hello' }, 'text delta';
    is $ev[6]{json}{usage}{output_tokens}, 3, 'message_delta output_tokens';
    is $ev[6]{json}{delta}{stop_reason}, 'end_turn', 'message_delta stop_reason';
    like $s->{body}, qr/\Aevent: message_start\ndata: \{/, 'exact SSE framing';
};


subtest 'openai responses: JSON and stream with response.completed usage' => sub {
    my $body = { model => 'gpt-r', input => 'tell me a joke', instructions => 'be fun' };
    my $res = post_json($llm, '/v1/responses', $body);
    is $res->{status}, 200, 'status';
    is $res->{json}{object}, 'response', 'object';
    is $res->{json}{status}, 'completed', 'status completed';
    is $res->{json}{output}[0]{type}, 'message', 'output message';
    is_deeply [ map { @{$_}{qw(type text)} } @{ $res->{json}{output}[0]{content} } ],
        [ 'output_text', 'Hello from mock' ], 'output_text';
    is $res->{json}{usage}{input_tokens}, 6, 'input tokens';
    is $res->{json}{usage}{output_tokens}, 3, 'output tokens';
    is $res->{json}{usage}{total_tokens}, 9, 'total tokens';

    my $s = post_json($llm, '/v1/responses', { %$body, stream => $true });
    my @ev = @{ $s->{events} };
    is $ev[0]{event}, 'response.created', 'created first';
    my @deltas = grep { $_->{event} eq 'response.output_text.delta' } @ev;
    is scalar @deltas, 3, 'one delta per word';
    is join('', map { $_->{json}{delta} } @deltas), 'Hello from mock', 'deltas';
    is $ev[-1]{event}, 'response.completed', 'completed last';
    is $ev[-1]{json}{response}{usage}{total_tokens}, 9, 'completed carries the usage';
    ok !(grep { $_->{data} eq '[DONE]' } @ev), 'no [DONE]';
};


subtest 'embeddings' => sub {
    my $res = post_json($llm, '/v1/embeddings', { model => 'emb', input => [ 'a b', 'c' ] });
    is $res->{status}, 200, 'status';
    is $res->{json}{object}, 'list', 'object';
    is $res->{json}{model}, 'emb', 'model';
    is scalar @{ $res->{json}{data} }, 2, 'one embedding per input';
    is $res->{json}{data}[1]{index}, 1, 'index';
    is $res->{json}{data}[0]{object}, 'embedding', 'object embedding';
    is scalar @{ $res->{json}{data}[0]{embedding} }, 8, '8 dimensions';
    ok !(grep { !/\A-?\d+(?:\.\d+)?\z/ } @{ $res->{json}{data}[0]{embedding} }), 'floats';
    is_deeply $res->{json}{usage}, { prompt_tokens => 3, total_tokens => 3 }, 'usage';

    my $again = post_json($llm, '/embeddings', { input => 'a b' });
    is_deeply $again->{json}{data}[0]{embedding}, $res->{json}{data}[0]{embedding},
        'same text, same vector (also at /embeddings)';
};


subtest 'x-mock-status and mock_status' => sub {
    my $res = post_json($llm, '/v1/chat/completions', chat_body(),
                        headers => { 'x-mock-status' => 429 });
    is $res->{status}, 429, 'status 429';
    is $res->{headers}{'retry-after'}, 1, 'retry-after';
    is $res->{headers}{'x-ratelimit-remaining-requests'}, 0, 'x-ratelimit-remaining-requests';
    like $res->{headers}{'x-request-id'}, qr/\Amock-\d+\z/, 'x-request-id still sent';
    is_deeply $res->{json}, { error => { message => 'mock error', type => 'mock',
                                         code => 429 } }, 'OpenAI-style error body';

    my $q = post_json($llm, '/v1/chat/completions?mock_status=503', chat_body());
    is $q->{status}, 503, 'query parameter';
    ok !exists $q->{headers}{'retry-after'}, 'retry-after only for 429';

    my $both = post_json($llm, '/v1/chat/completions?mock_status=503', chat_body(),
                         headers => { 'x-mock-status' => 500 });
    is $both->{status}, 500, 'the header wins over the query parameter';

    my $st = http_req($llm, 'GET', '/status/418');
    is $st->{status}, 418, '/status/418';
    is_deeply $st->{json}, { status => 418 }, 'JSON body';
    is http_req($llm, 'GET', '/status/204')->{body}, '', '/status/204 has no body';
};


subtest 'x-mock-delay-ms and /delay' => sub {
    my $t0 = time;
    my $res = post_json($llm, '/v1/chat/completions', chat_body(),
                        headers => { 'x-mock-delay-ms' => 400 });
    my $took = time - $t0;
    is $res->{status}, 200, 'status';
    cmp_ok $took, '>=', 0.38, "delayed ($took s)";
    cmp_ok $took, '<', 3, 'but not forever';

    $t0 = time;
    my $d = http_req($llm, 'GET', '/delay/300');
    is $d->{status}, 200, '/delay status';
    cmp_ok time - $t0, '>=', 0.28, '/delay/300 waits';

    my $timeout = http_req($llm, 'GET', '/delay/3000', timeout => 0.3);
    is $timeout->{status}, 599, 'client timeout reported as 599';
    is $timeout->{error}, 'timeout', 'error says timeout';
};


subtest '/echo reflects the request' => sub {
    my $res = http_req($llm, 'PUT', '/echo/anything/x?a=1&b=two%20words',
                       headers => { 'X-Custom' => 'yes', Host => 'example.test' },
                       body => 'raw body');
    is $res->{status}, 200, 'status';
    my $e = $res->{json};
    is $e->{method}, 'PUT', 'method';
    is $e->{path}, '/echo/anything/x', 'path';
    is $e->{query}, 'a=1&b=two%20words', 'raw query';
    is_deeply $e->{args}, { a => '1', b => 'two words' }, 'decoded args';
    is $e->{headers}{'x-custom'}, 'yes', 'headers lowercased';
    is $e->{headers}{host}, 'example.test', 'Host header as sent';
    is $e->{body}, 'raw body', 'body';

    my $get = http_req($llm, 'GET', '/echo');
    is $get->{json}{method}, 'GET', 'GET /echo';
    is $get->{json}{body}, '', 'empty body';
};


subtest '/sse: N events, spaced by delay_ms, padded to size' => sub {
    my $res = http_req($llm, 'GET', '/sse?n=4&delay_ms=200&size=300');
    is $res->{status}, 200, 'status';
    like $res->{headers}{'content-type'}, qr{text/event-stream}, 'event stream';
    my @ev = @{ $res->{events} };
    is scalar @ev, 4, '4 events';
    is_deeply [ map { $_->{json}{seq} } @ev ], [ 1 .. 4 ], 'seq';
    my $ok = 1;
    for my $i (1 .. $#ev) {
        my $dt = $ev[$i]{json}{t} - $ev[$i - 1]{json}{t};
        $ok = 0, diag("gap $i: $dt") if $dt < 0.18 || $dt > 1;
    }
    ok $ok, 'sender timestamps ~200 ms apart';
    cmp_ok $ev[-1]{t} - $ev[0]{t}, '>=', 0.55, 'arrival spread matches';
    my ($first) = $res->{body} =~ /\A(data: [^\n]*\n\n)/;
    cmp_ok abs(length($first) - 300), '<=', 2, 'event padded to ~300 bytes';
};


subtest '/bytes/N and /static.json' => sub {
    my $n = 3 * 1024 * 1024 + 17;
    my $res = http_req($llm, 'GET', "/bytes/$n", discard_body => 1);
    is $res->{status}, 200, 'status';
    is $res->{headers}{'content-length'}, $n, 'content-length';
    is $res->{body_length}, $n, 'all bytes';
    ok $res->{complete}, 'complete';

    my $small = http_req($llm, 'GET', '/bytes/10');
    is $small->{body}, 'x' x 10, 'content is x';

    my $st = http_req($llm, 'GET', '/static.json');
    is length $st->{body}, 1024, '1 KiB';
    is $st->{headers}{'content-length'}, 1024, 'content-length';
    ok ref $st->{json} eq 'HASH', 'valid JSON';

    my $nf = http_req($llm, 'GET', '/nope');
    is $nf->{status}, 404, 'unknown path -> 404';
    ok $nf->{json}, 'with JSON';
};


subtest 'recorded requests' => sub {
    $llm->clear;
    is scalar @{ $llm->requests }, 0, 'clear empties the record';
    my $body = chat_body(temperature => 0.5);
    my $res = post_json($llm, '/v1/chat/completions?x=1', $body,
                        headers => { 'Authorization' => 'Bearer abc', 'X-Trace' => 't1' });
    my $reqs = $llm->requests;
    is scalar @$reqs, 1, 'one recorded';
    my $r = $llm->last_request;
    is $r->{method}, 'POST', 'method';
    is $r->{path}, '/v1/chat/completions', 'path';
    is $r->{query}, 'x=1', 'query';
    is $r->{headers}{authorization}, 'Bearer abc', 'header names lowercased';
    is $r->{headers}{'x-trace'}, 't1', 'custom header';
    is $r->{headers}{'content-type'}, 'application/json', 'content-type';
    is_deeply $r->{json}, $body, 'decoded JSON';
    is $r->{body}, $json->encode($body), 'raw body';
    ok $r->{time} > time - 60 && $r->{time} <= time, 'time is an epoch';
    is $res->{headers}{'x-request-id'}, "mock-$r->{id}", 'x-request-id names the record';

    post_json($llm, '/echo', 'not json');
    my $second = $llm->last_request;
    is $second->{id}, $r->{id} + 1, 'ids count up';
    ok !defined $second->{json}, 'json is null for a non-JSON body';

    my $api = HTTP::Tiny->new->get($llm->url('/__mock/requests'));
    my $list = $json->decode($api->{content});
    is scalar @$list, 2, 'GET /__mock/requests lists them';
    is $list->[0]{id}, $r->{id}, 'same records';
    is scalar @{ $llm->requests }, 2, '/__mock/* itself is not recorded';

    my $bin = join '', map { chr } 0 .. 255;
    post_json($llm, '/echo', $bin, headers => { 'Content-Type' => 'application/octet-stream' });
    is $llm->last_request->{body}, $bin, 'binary bodies round-trip';
    my $utf8 = $json->encode({ messages => [ { role => 'user', content => "caf\x{e9}" } ] });
    post_json($llm, '/v1/chat/completions', $utf8);
    is $llm->last_request->{json}{messages}[0]{content}, "caf\x{e9}",
        'json holds character strings';
    is $llm->last_request->{body}, $utf8, 'body holds the bytes';

    is scalar @{ $llm->wait_requests(4, 1) }, 4, 'wait_requests';
};


subtest 'x-mock-cut, x-mock-chunk-split, x-mock-invalid-json, x-mock-usage' => sub {
    $llm->clear;
    my $cut = post_json($llm, '/v1/chat/completions', chat_body(stream => $true),
                        headers => { 'x-mock-cut' => 2 });
    is $cut->{status}, 200, 'status';
    ok !$cut->{complete}, 'no terminating chunk';
    is scalar @{ data_events($cut) }, 2, 'two events, then the connection closed';
    unlike $cut->{body}, qr/\[DONE\]/, 'no [DONE]';
    my $out = wait_for(sub { my $r = $llm->responses; @$r && $r->[-1] }, 2);
    is $out->{outcome}, 'cut', 'recorded as cut';
    is $out->{events}, 2, 'after 2 events';

    my $cutjson = post_json($llm, '/v1/chat/completions', chat_body(),
                            headers => { 'x-mock-cut' => 1 });
    ok !$cutjson->{complete}, 'non-stream cut: body shorter than Content-Length';

    my $split = post_json($llm, '/v1/chat/completions', chat_body(stream => $true),
                          headers => { 'x-mock-chunk-split' => 7 });
    ok $split->{complete}, 'split stream completes';
    cmp_ok scalar @{ $split->{chunks} }, '>', 10, 'arrives in many reads';
    my @ev = @{ data_events($split) };
    is scalar @ev, 5, 'events reassemble';
    is join('', map { $_->{json}{choices}[0]{delta}{content} // '' } @ev[0 .. 2]),
       'Hello from mock', 'content intact';

    my $bad = post_json($llm, '/v1/chat/completions', chat_body(),
                        headers => { 'x-mock-invalid-json' => 1 });
    is $bad->{status}, 200, 'invalid-json: 200';
    ok length $bad->{body}, 'with a body';
    ok !defined eval { $json->decode($bad->{body}) }, 'that is not JSON';

    my $badstream = post_json($llm, '/v1/chat/completions', chat_body(stream => $true),
                              headers => { 'x-mock-invalid-json' => 1 });
    my @bev = @{ data_events($badstream) };
    ok !defined $bev[0]{json}, 'invalid-json stream: first event is not JSON';
    is $bev[-1]{data}, '[DONE]', 'then [DONE]';

    my $nousage = post_json($llm, '/v1/chat/completions', chat_body(),
                            headers => { 'x-mock-usage' => 0 });
    ok !exists $nousage->{json}{usage}, 'x-mock-usage 0 omits usage';
    my $nous = post_json($llm, '/v1/chat/completions',
        chat_body(stream => $true, stream_options => { include_usage => $true }),
        headers => { 'x-mock-usage' => 0 });
    ok !(grep { ref $_->{json} && $_->{json}{usage} } @{ data_events($nous) }),
        'and from the stream';
    my $forced = post_json($llm, '/v1/messages', { messages => [] },
                           headers => { 'x-mock-usage' => '7,5' });
    is_deeply $forced->{json}{usage}, { input_tokens => 7, output_tokens => 5 },
        'x-mock-usage P,C forces the numbers';

    my $tool = post_json($llm, '/v1/chat/completions', chat_body(),
                         headers => { 'x-mock-tool-call' => 'get_weather' });
    is $tool->{json}{choices}[0]{message}{tool_calls}[0]{function}{name}, 'get_weather',
        'x-mock-tool-call';

    my $hdr = post_json($llm, '/v1/chat/completions', chat_body(),
                        headers => { 'x-mock-header' => 'X-Upstream-Secret: s3',
                                     'x-mock-content-type' => 'application/json; charset=utf-8' });
    is $hdr->{headers}{'x-upstream-secret'}, 's3', 'x-mock-header';
    is $hdr->{headers}{'content-type'}, 'application/json; charset=utf-8',
        'x-mock-content-type';
};


subtest 'HTTP/1.1 details over raw sockets: keep-alive, pipelining, chunked, 100-continue' => sub {
    $llm->clear;
    my $req = "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            . "POST /echo?n=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            . "POST /echo?n=3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            . "Connection: close\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
    my $raw = raw_http($llm, $req);
    my @status = $raw =~ m{HTTP/1\.1 (\d{3}) }g;
    is_deeply \@status, [ 200, 200, 200 ], 'three pipelined responses';
    my $reqs = $llm->requests;
    is_deeply [ map { $_->{query} } @$reqs ], [ 'n=1', 'n=2', 'n=3' ], 'in order';
    is $reqs->[1]{body}, 'hello', 'content-length body';
    is $reqs->[2]{body}, 'abcde', 'chunked body decoded';
    is scalar(keys %{ { map { $_->{conn} => 1 } @$reqs } }), 1, 'one connection';
    is_deeply [ map { $_->{conn_seq} } @$reqs ], [ 1, 2, 3 ], 'conn_seq';

    my $pieces = raw_http($llm, [ "POST /echo HTTP/1.1\r\nHost: x\r\nCon",
                                  "tent-Length: 4\r\nConnection: close\r\n\r\nab", "cd" ]);
    like $pieces, qr/"body":"abcd"/, 'request split over several writes';

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $llm->port) or die;
    print $s "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
           . "Connection: close\r\n\r\n";
    $s->flush;
    my $interim = '';
    my $sel = IO::Select->new($s);
    while ($interim !~ /\r\n\r\n/ && $sel->can_read(2)) {
        sysread($s, $interim, 1024, length $interim) or last;
    }
    like $interim, qr{\AHTTP/1\.1 100 Continue\r\n\r\n}, '100 Continue before the body';
    print $s "xyz";
    $s->flush;
    my $rest = '';
    while ($sel->can_read(2)) {
        sysread($s, $rest, 65536, length $rest) or last;
    }
    like $rest, qr/"body":"xyz"/, 'then the response';

    my $http10 = raw_http($llm, "GET /sse?n=2 HTTP/1.0\r\n\r\n");
    unlike $http10, qr/Transfer-Encoding/i, 'HTTP/1.0: no chunked encoding';
    like $http10, qr/"seq":2/, 'close-delimited stream';

    like raw_http($llm, "BLAH\r\n\r\n"), qr{\AHTTP/1\.1 400}, 'malformed request -> 400';
};


subtest 'a slow stream does not block other connections; hang-ups are noticed' => sub {
    $llm->clear;
    my $slow = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $llm->port) or die;
    my $body = $json->encode(chat_body(stream => $true));
    print $slow "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
              . "application/json\r\nx-mock-chunk-delay-ms: 500\r\nx-mock-events: 10\r\n"
              . "Content-Length: " . length($body) . "\r\n\r\n$body";
    $slow->flush;
    ok wait_for(sub { @{ $llm->requests } == 1 }, 3), 'slow stream started';

    my $t0 = time;
    my $fast = post_json($llm, '/v1/chat/completions', chat_body());
    is $fast->{status}, 200, 'another request meanwhile';
    cmp_ok time - $t0, '<', 1.5, 'answered while the slow stream goes on (5 s)';

    close $slow;
    my $out = wait_for(sub { (grep { $_->{outcome} ne 'complete' } @{ $llm->responses })[0] },
                       3);
    ok $out, 'the hang-up is noticed during the stream';
    is $out->{outcome}, 'client_closed', 'recorded as client_closed' if $out;
    cmp_ok $out->{events}, '<', 10, 'before all events were sent' if $out;
};


subtest 'Sluice::Test helpers' => sub {
    my $p = free_port();
    ok $p > 1024 && $p < 65536, 'free_port';
    isnt free_port(), $p, 'never the same port twice';
    ok(IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p, Listen => 1,
                             ReuseAddr => 1), 'and it is bindable');

    my $n = 0;
    ok wait_for(sub { ++$n >= 3 }, 2, 0.01), 'wait_for returns true';
    my $t0 = time;
    ok !wait_for(sub { 0 }, 0.2), 'wait_for gives up';
    cmp_ok time - $t0, '<', 1, 'at its deadline';

    my $ev = parse_sse("event: a\ndata: {\"x\":1}\n\n: comment\n\ndata: l1\ndata: l2\r\n\r\n");
    is scalar @$ev, 2, 'parse_sse: comments skipped';
    is $ev->[0]{event}, 'a', 'event name';
    is $ev->[0]{json}{x}, 1, 'json';
    is $ev->[1]{data}, "l1\nl2", 'multi-line data';

    my $until = raw_http($llm, "GET /delay/2000 HTTP/1.1\r\nHost: x\r\n\r\n"
                             . "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
                         until => qr/"delayed_ms"/, timeout => 5);
    like $until, qr/"delayed_ms":2000/, 'raw_http until';

    my $mock2 = start_mock_llm();
    my $pid = $mock2->pid;
    ok kill(0, $pid), 'second mock runs';
    isnt $mock2->port, $llm->port, 'on its own port';
    is_deeply $mock2->ai_proxy_conf(options => { model => 'm2', temperature => 0 }), {
        provider => 'openai-compatible',
        auth     => { header => { Authorization => 'Bearer test-key' } },
        options  => { model => 'm2', temperature => 0 },
        override => { endpoint => $mock2->url('/v1/chat/completions') },
    }, 'ai_proxy_conf deep-merges';
    ok !exists $mock2->ai_proxy_conf(options => { model => undef })->{options}{model},
        'undef deletes';
    is $mock2->ai_instance('a')->{name}, 'a', 'ai_instance';
    undef $mock2;
    ok wait_for(sub { !kill(0, $pid) }, 3), 'killed when the object goes away';
};


# A stand-in for build/sluice (master + workers, -s reload, SIGQUIT), so start_sluice's
# process handling is tested without the gateway.
my $FAKE_SLUICE = <<'PERL';
use strict; use warnings; use Getopt::Long; use IO::Select; use IO::Socket::INET; use JSON::PP;
my ($c, $p, $s) = ('', '', '');
GetOptions('c=s' => \$c, 'p=s' => \$p, 's=s' => \$s) or exit 2;
sub append { open my $f, '>>', $_[0] or die; print $f $_[1]; close $f }
if ($s) {
    open my $f, '<', "$p/logs/sluice.pid" or die "no pid file\n";
    kill 'HUP', scalar <$f> or die "not running\n";
    exit 0;
}
my $conf = decode_json(do { local $/; open my $f, '<', $c or die "$c: $!\n"; <$f> });
die "refusing: bad config\n" if $conf->{refuse};
append("$p/logs/sluice.pid", $$);
my @l = map { my ($h, $port) = split /:/; IO::Socket::INET->new(LocalAddr => $h,
    LocalPort => $port, Listen => 16, ReuseAddr => 1) or die "$_: $!\n" }
    $conf->{listen}[0], $conf->{admin}{listen};
my @kids;
for (1 .. $conf->{workers}) {
    my $pid = fork // die;
    if (!$pid) {
        $SIG{QUIT} = sub { exit 0 };
        while (1) {
            for my $ls (IO::Select->new(@l)->can_read) {
                my $cl = $ls->accept or next;
                my $req = '';
                sysread($cl, $req, 65536, length $req) or last while $req !~ /\r\n\r\n/;
                my ($m, $path) = $req =~ /\A(\S+) (\S+)/;
                my ($key) = $req =~ /^X-API-KEY: (\S+)/mi;
                my ($len) = $req =~ /^Content-Length: (\d+)/mi;
                my ($body) = $req =~ /\r\n\r\n(.*)\z/s;
                sysread($cl, $body, 65536, length $body) or last
                    while defined $len && length $body < $len;
                my $out = encode_json({ method => $m, path => $path, key => $key,
                                        body => $body, worker => $$ });
                print $cl "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    . "Content-Length: " . length($out) . "\r\nConnection: close\r\n\r\n$out";
                close $cl;
                append("$p/logs/access.log", encode_json({ uri => $path, status => 200 }) . "\n");
            }
        }
    }
    push @kids, $pid;
}
print STDERR "stand-in started\n";
$SIG{HUP} = sub { append("$p/logs/error.log", "reloaded\n") };
$SIG{QUIT} = sub { kill 'QUIT', @kids; waitpid($_, 0) for @kids; exit 0 };
$SIG{TERM} = sub { kill 'KILL', @kids; exit 3 };
sleep 1 while 1;
PERL


subtest 'start_sluice lifecycle, with a stand-in binary' => sub {
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    open my $fh, '>', "$dir/sluice" or die;
    print $fh "#!$^X\n$FAKE_SLUICE";
    close $fh;
    chmod 0755, "$dir/sluice";
    local $ENV{SLUICE_BIN} = "$dir/sluice";

    my $s = start_sluice(workers => 2, routes => [ { id => 1, uri => '/x' } ],
                         config => { log_level => 'debug', metrics => undef });
    my $conf = $s->conf;
    is $conf->{config}{provider}, 'file', 'routes: file provider';
    is $conf->{config}{file}, $s->prefix . '/conf/routes.json', 'routes file';
    is $conf->{log_level}, 'debug', 'config deep-merged';
    ok !exists $conf->{metrics}, 'undef deletes';
    is_deeply $conf->{listen}, [ '127.0.0.1:' . $s->port ], 'listen';
    ok -d $s->prefix . "/$_", "$_/ exists" for qw(logs data conf);
    # the stand-in forks its workers after it starts listening: give it a moment
    ok wait_for(sub { scalar($s->worker_pids) == 2 }, 10), 'two workers';

    my $r = admin_put($s, '/apisix/admin/routes/1', { uri => '/a' });
    is $r->{status}, 200, 'admin_put';
    is_deeply [ @{ $r->{json} }{qw(method key body)} ],
              [ 'PUT', Sluice::Test::ADMIN_KEY(), '{"uri":"/a"}' ], 'method, key, JSON body';
    is admin_req($s, 'GET', '/r', undef, key => Sluice::Test::VIEWER_KEY())->{json}{key},
       Sluice::Test::VIEWER_KEY(), 'key option';
    ok !defined admin_req($s, 'GET', '/r', undef, no_key => 1)->{json}{key}, 'no_key';
    is post_json($s, '/v1/chat', { a => 1 })->{json}{path}, '/v1/chat', 'post_json';
    is scalar @{ $s->wait_access_log(4, 3) }, 4, 'wait_access_log: one line per request';
    like $s->stderr, qr/stand-in started/, 'stderr';

    is $s->reload, 0, 'reload';
    ok $s->wait_error_log(qr/reloaded/, 3), 'wait_error_log';

    $s->write_routes([ { id => 2 } ]);
    my $routes = Sluice::Test::decode_json(do {
        local $/; open my $f, '<', $s->prefix . '/conf/routes.json' or die; <$f> });
    is_deeply $routes, { routes => [ { id => 2 } ] }, 'write_routes';

    my @workers = $s->worker_pids;
    is $s->stop, 0, 'graceful stop: exit 0';
    ok !$s->alive, 'stopped';
    ok !(grep { kill 0, $_ } @workers), 'workers gone';
    ok -d $s->prefix, 'logs kept after stop';
    $s->start;
    ok $s->alive, 'start again';
    is http_req($s, 'GET', '/again')->{status}, 200, 'serves again';
    my $prefix = $s->prefix;
    undef $s;
    ok !-d $prefix, 'prefix removed when the object goes away';

    my $bad = start_sluice(expect_exit => 1, config => { refuse => 1 });
    isnt $bad->exit_status, 0, 'expect_exit: exit status';
    like $bad->stderr, qr/refusing/, 'expect_exit: stderr';
    eval { start_sluice(config => { refuse => 1 }) };
    like $@, qr/exited with status \d+ during start-up:\n.*refusing/s,
        'start-up failure dies with the tail of stderr';
};


subtest 'the mock ran without Perl warnings or errors' => sub {
    unlike $llm->stderr, qr/ at \S+ line \d+/, 'no warnings on stderr' or diag $llm->stderr;
};

done_testing;
