# ai-proxy: bad client input and unroutable requests get the reference's status and body
# (apisix-reference.md §2.7) without reaching the provider: wrong Content-Type, empty body,
# invalid JSON, a body over max_req_body_size (by Content-Length and while reading a chunked
# body), {}, a protocol the provider does not speak, an Anthropic body without messages;
# providers Sluice does not have are refused when the route is configured. Each is logged,
# and the worker serves on.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $mock = 'http://127.0.0.1:' . $llm->port;
my $sluice = start_sluice();

sub route {
    my ($id, $uri, %conf) = @_;
    my $r = admin_put($sluice, "/apisix/admin/routes/$id",
                      { uri => $uri, plugins => { 'ai-proxy' => $llm->ai_proxy_conf(%conf) } });
    ok $r->{status} < 300, "route $id" or diag $r->{body};
}
route('chat', '/v1/chat/completions', max_req_body_size => 1024);
route('ds', '/ds/*', provider => 'deepseek', override => { endpoint => $mock });
route('oa', '/oa/*', provider => 'openai', override => { endpoint => $mock });

my $chat = { messages => [{ role => 'user', content => 'hi' }] };
my $workers = join ',', $sluice->worker_pids;

# status, Content-Type, body; and that nothing reached the provider
sub check {
    my ($name, $res, $status, $ct, $body) = @_;
    subtest $name => sub {
        is $res->{status}, $status, "status $status";
        if ($ct eq 'json') {
            like $res->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
            ref $body eq 'Regexp' ? like($res->{body}, $body, 'body')
                                  : is_deeply($res->{json}, $body, 'body');
        }
        else {
            unlike $res->{headers}{'content-type'} // '', qr{json}, 'plain text';
            ref $body eq 'Regexp' ? like($res->{body}, $body, 'body')
                                  : is($res->{body}, $body, 'body');
        }
        is scalar @{ $llm->requests }, 0, 'provider not called';
        $llm->clear;
    };
}

check('Content-Type not JSON',
    http_req($sluice, 'POST', '/v1/chat/completions', body => 'hello',
             headers => { 'Content-Type' => 'text/plain' }),
    400, 'text', 'unsupported content-type: text/plain, only application/json is supported');

check('empty body',
    http_req($sluice, 'POST', '/v1/chat/completions', body => '',
             headers => { 'Content-Type' => 'application/json' }),
    400, 'json', { message => 'could not get body: request body is empty' });

check('no body at all',
    http_req($sluice, 'POST', '/v1/chat/completions'),
    400, 'json', { message => 'could not get body: request body is empty' });

check('invalid JSON (the reference test)',
    post_json($sluice, '/v1/chat/completions', '{}"messages": [{"role":"user","content":"x"}]'),
    400, 'json', { message => 'could not parse JSON request body: Expected the end but found '
                              . 'T_STRING at character 3' });

check('truncated JSON',
    post_json($sluice, '/v1/chat/completions', '{"messages": [{"role":"user"'),
    400, 'json', qr/^\{"message":"could not parse JSON request body: .+"\}$/);

check('body over max_req_body_size (Content-Length)',
    post_json($sluice, '/v1/chat/completions',
              { messages => [{ role => 'user', content => 'x' x 2000 }] }),
    413, 'json', qr/"message":"[^"]*greater than the maximum size 1024/);

{
    # a chunked body has no Content-Length: the limit is found while reading
    my $body = '{"messages":[{"role":"user","content":"' . ('y' x 3000) . '"}]}';
    my $raw = raw_http($sluice, join('',
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        (map { sprintf("%x\r\n%s\r\n", length $_, $_) } unpack '(a500)*', $body), "0\r\n\r\n"));
    my ($status) = $raw =~ m{^HTTP/1\.1 (\d+)};
    subtest 'body over max_req_body_size (chunked)' => sub {
        is $status, 413, 'status 413';
        like $raw, qr/greater than the maximum size/, 'says why';
        is scalar @{ $llm->requests }, 0, 'provider not called';
    };
}

check('{} matches no protocol',
    post_json($sluice, '/v1/chat/completions', '{}'),
    400, 'text', 'no matching AI protocol for the request');

check('a JSON string matches no protocol',
    post_json($sluice, '/v1/chat/completions', '"hello"'),
    400, 'text', 'no matching AI protocol for the request');

check('provider lacks the protocol (embeddings to deepseek)',
    post_json($sluice, '/ds/v1/embeddings', { input => 'hello' }),
    400, 'text', 'provider deepseek does not support openai-embeddings protocol '
                 . '(supported: openai-chat)');

check('provider lacks the protocol (Responses API to deepseek)',
    post_json($sluice, '/ds/v1/responses', { input => 'hello', model => 'x' }),
    400, 'text', 'provider deepseek does not support openai-responses protocol '
                 . '(supported: openai-chat)');

check('Anthropic body without messages to an OpenAI provider',
    post_json($sluice, '/oa/v1/messages', { model => 'claude', max_tokens => 10 }),
    400, 'json', { error_msg => 'missing messages' });

check('Anthropic body with empty messages',
    post_json($sluice, '/oa/v1/messages', { model => 'claude', messages => [] }),
    400, 'json', { error_msg => 'missing messages' });

subtest 'providers Sluice lacks are refused at configuration time' => sub {
    for my $p (qw(vertex-ai bedrock)) {
        my $r = admin_put($sluice, "/apisix/admin/routes/$p", { uri => "/$p",
            plugins => { 'ai-proxy' => { provider => $p, auth => { header => { a => 'b' } },
                                         override => { endpoint => $mock } } } });
        is $r->{status}, 400, "$p: 400";
        like $r->{body}, qr/ai provider: \Q$p\E is not supported\./, "$p: says why";
    }
    my $r = admin_put($sluice, '/apisix/admin/routes/bad', { uri => '/bad',
        plugins => { 'ai-proxy' => { provider => 'nope', auth => {} } } });
    is $r->{status}, 400, 'unknown provider: 400';
    like $r->{body}, qr/failed to check the configuration of plugin ai-proxy.*provider/,
        'APISIX-style message';
    $r = admin_put($sluice, '/apisix/admin/routes/noauth', { uri => '/noauth',
        plugins => { 'ai-proxy' => { provider => 'openai' } } });
    is $r->{status}, 400, 'auth is required';
};

subtest 'the errors are in the access log, and nothing is counted as AI traffic' => sub {
    my $log = $sluice->wait_access_log(13);
    my @bad = grep { $_->{status} == 400 || $_->{status} == 413 } @$log;
    cmp_ok scalar @bad, '>=', 13, 'one line per rejected request';
    ok !grep({ $_->{llm_prompt_tokens} || $_->{llm_completion_tokens} } @bad), 'no tokens';
    ok !grep({ $_->{upstream_addr} } @bad), 'no upstream';
    like $sluice->error_log, qr/failed to read request body: .*greater than the maximum size/,
        'the oversized body is logged';
};

subtest 'the worker serves on' => sub {
    is join(',', $sluice->worker_pids), $workers, 'same worker process';
    my $r = post_json($sluice, '/v1/chat/completions', $chat);
    is $r->{status}, 200, 'a good request still works';
    my $m = http_req($sluice->metrics_url('/apisix/prometheus/metrics'), 'GET', '');
    my ($active) = ($m->{body} // '') =~ /^apisix_llm_active_connections\{[^}]*\} (\d+)/m;
    is $active // 0, 0, 'no LLM connection left open';
};

done_testing;
