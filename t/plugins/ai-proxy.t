# ai-proxy, the basic path: the overview's example route (provider openai, auth header,
# options.model, created through the Admin API) answers a chat request through the provider,
# and the request's AI facts reach ctx.var (read by a probe plugin in the log phase) and the
# access log: request_type, request_llm_model, llm_model, llm_time_to_first_token, token
# counts, llm_stream, llm_provider_instance.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

my $llm = start_mock_llm();

# log-phase probe: writes the AI ctx.var fields to error.log as one JSON line
my $probe_dir = tempdir('sluice-probe-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open my $fh, '>', "$probe_dir/var-probe.lua" or die $!;
print $fh <<'LUA';
local pdk = require("sluice.pdk")
local FIELDS = { "request_type", "request_llm_model", "llm_model", "llm_time_to_first_token",
                 "llm_prompt_tokens", "llm_completion_tokens", "llm_total_tokens", "llm_stream",
                 "llm_provider_instance", "llm_request_done", "llm_tool_count",
                 "llm_has_tool_calls", "apisix_upstream_response_time", "upstream_status" }
local _M = { name = "var-probe", version = 1, priority = 1, schema = { type = "object" } }
function _M.log(conf, ctx)
    local out = {}
    for _, k in ipairs(FIELDS) do
        local v = ctx.var[k]
        out[k] = v ~= nil and tostring(v) or nil
    end
    pdk.log.warn("VARPROBE ", pdk.json.encode(out))
end
return _M
LUA
close $fh;

my $sluice = start_sluice(config => { plugin_paths => [$probe_dir],
                                      plugins => ['ai-proxy', 'var-probe'] });

# The overview's example, with the provider's host replaced by the mock (override.endpoint
# without a path keeps openai's own path, /v1/chat/completions).
my $route = {
    id => 'ai-proxy-route',
    uri => '/anything',
    methods => ['POST'],
    plugins => {
        'ai-proxy' => {
            provider => 'openai',
            auth => { header => { Authorization => 'Bearer sk-route-key' } },
            options => { model => 'gpt-4' },
            override => { endpoint => 'http://127.0.0.1:' . $llm->port },
        },
        'var-probe' => {},
    },
};
my $res = admin_req($sluice, 'PUT', '/apisix/admin/routes', $route);
ok $res->{status} == 200 || $res->{status} == 201, 'route created with PUT /routes and an id'
    or diag $res->{body};

my $question = {
    messages => [
        { role => 'system', content => 'You are a mathematician' },
        { role => 'user', content => 'What is 1+1?' },
    ],
};

sub probes {
    my @lines = $sluice->error_log =~ /VARPROBE (\{.*\})/g;
    return [ map { decode_json($_) } @lines ];
}

subtest 'the overview example answers through the provider' => sub {
    $llm->clear;
    my $r = post_json($sluice, '/anything', $question);
    is $r->{status}, 200, 'status 200';
    like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON answer';
    my $j = $r->{json} || {};
    is $j->{object}, 'chat.completion', 'a chat completion';
    is $j->{model}, 'gpt-4', 'model of the route';
    is $j->{choices}[0]{message}{role}, 'assistant', 'assistant message';
    is $j->{choices}[0]{message}{content}, 'Hello from mock', 'the answer';
    is $j->{choices}[0]{finish_reason}, 'stop', 'finish_reason';
    is_deeply $j->{usage}, { prompt_tokens => 7, completion_tokens => 3, total_tokens => 10 },
        'usage passed through';

    my $up = $llm->last_request;
    is $up->{method}, 'POST', 'POST upstream';
    is $up->{path}, '/v1/chat/completions', 'openai chat path';
    is $up->{headers}{authorization}, 'Bearer sk-route-key', 'route key sent';
    is $up->{headers}{'content-type'}, 'application/json', 'JSON upstream';
    is $up->{json}{model}, 'gpt-4', 'options.model written into the body';
    is_deeply $up->{json}{messages}, $question->{messages}, 'messages unchanged';
};

subtest 'the route only takes POST' => sub {
    my $r = http_req($sluice, 'GET', '/anything');
    is $r->{status}, 404, 'GET is not routed';
};

subtest 'ctx.var and the access log carry the AI fields (non-streaming)' => sub {
    $llm->clear;
    my $r = post_json($sluice, '/anything', { %$question, model => 'gpt-3.5-turbo' });
    is $r->{status}, 200, 'status';
    my $log = $sluice->wait_access_log(3);
    my $line = $log->[-1] || {};
    is $line->{route_id}, 'ai-proxy-route', 'route_id';
    is $line->{request_type}, 'ai_chat', 'request_type ai_chat';
    is $line->{request_llm_model}, 'gpt-3.5-turbo', 'request_llm_model = the client model';
    is $line->{llm_model}, 'gpt-4', 'llm_model = the route model';
    cmp_ok $line->{llm_time_to_first_token}, '>', 0, 'llm_time_to_first_token > 0';
    cmp_ok $line->{llm_time_to_first_token}, '<', 2000, 'llm_time_to_first_token in ms';
    is $line->{llm_prompt_tokens}, 7, 'llm_prompt_tokens';
    is $line->{llm_completion_tokens}, 3, 'llm_completion_tokens';
    is $line->{llm_total_tokens}, 10, 'llm_total_tokens';
    ok !$line->{llm_stream}, 'llm_stream false';
    is $line->{llm_provider_instance}, 'ai-proxy-openai', 'llm_provider_instance';
    is $line->{upstream_status}, 200, 'upstream_status';
    like $line->{upstream_addr}, qr/^127\.0\.0\.1:\d+$/, 'upstream_addr';
    ok !exists $line->{llm_usage_estimated}, 'usage exact, not estimated';

    ok wait_for(sub { @{ probes() } >= 2 }, 5), 'probe ran';
    my $v = probes()->[-1] || {};
    is $v->{request_type}, 'ai_chat', 'ctx.var.request_type';
    is $v->{request_llm_model}, 'gpt-3.5-turbo', 'ctx.var.request_llm_model';
    is $v->{llm_model}, 'gpt-4', 'ctx.var.llm_model';
    cmp_ok $v->{llm_time_to_first_token} // 0, '>', 0, 'ctx.var.llm_time_to_first_token';
    is $v->{llm_prompt_tokens}, 7, 'ctx.var.llm_prompt_tokens';
    is $v->{llm_completion_tokens}, 3, 'ctx.var.llm_completion_tokens';
    is $v->{llm_total_tokens}, 10, 'ctx.var.llm_total_tokens';
    is $v->{llm_stream}, 'false', 'ctx.var.llm_stream';
    is $v->{llm_provider_instance}, 'ai-proxy-openai', 'ctx.var.llm_provider_instance';
    is $v->{llm_request_done}, 'true', 'ctx.var.llm_request_done';
    is $v->{llm_tool_count}, 0, 'ctx.var.llm_tool_count';
    is $v->{llm_has_tool_calls}, 'false', 'ctx.var.llm_has_tool_calls';
    cmp_ok $v->{apisix_upstream_response_time} // -1, '>=', 0,
        'ctx.var.apisix_upstream_response_time (ms)';
};

subtest 'ctx.var and the access log carry the AI fields (streaming)' => sub {
    $llm->clear;
    my $r = post_json($sluice, '/anything', { %$question, stream => JSON::PP::true },
                      headers => { 'x-mock-events' => 12, 'x-mock-chunk-delay-ms' => 20 });
    is $r->{status}, 200, 'status';
    like $r->{headers}{'content-type'} // '', qr{^text/event-stream}, 'an SSE stream';
    my @ev = @{ $r->{events} || [] };
    is $ev[-1]{data}, '[DONE]', 'ends with [DONE]';
    my $text = join '', map { $_->{json} && $_->{json}{choices}[0]
                              ? $_->{json}{choices}[0]{delta}{content} // '' : '' } @ev;
    is $text, join(' ', map { "w$_" } 1 .. 12), 'the deltas make the answer';

    my $line = $sluice->wait_access_log(4)->[-1] || {};
    is $line->{request_type}, 'ai_stream', 'request_type ai_stream';
    is $line->{request_llm_model}, '', 'no client model';
    is $line->{llm_model}, 'gpt-4', 'llm_model';
    ok $line->{llm_stream}, 'llm_stream true';
    is $line->{llm_prompt_tokens}, 7, 'prompt tokens from the usage chunk';
    is $line->{llm_completion_tokens}, 12, 'completion tokens from the usage chunk';
    is $line->{llm_total_tokens}, 19, 'total';
    cmp_ok $line->{llm_time_to_first_token}, '>', 0, 'TTFT > 0';
    cmp_ok $line->{llm_time_to_first_token}, '<', 200, 'TTFT is the first event, not the end';
    cmp_ok $line->{upstream_response_time}, '>=', 200, 'the whole stream took >= 12 x 20 ms';

    ok wait_for(sub { @{ probes() } >= 3 }, 5), 'probe ran';
    my $v = probes()->[-1] || {};
    is $v->{request_type}, 'ai_stream', 'ctx.var.request_type';
    is $v->{llm_stream}, 'true', 'ctx.var.llm_stream';
    is $v->{llm_completion_tokens}, 12, 'ctx.var.llm_completion_tokens';
};

subtest 'without options.model the client model is the effective one' => sub {
    my $r2 = admin_put($sluice, '/apisix/admin/routes/client-model', {
        uri => '/client-model',
        plugins => { 'ai-proxy' => $llm->ai_proxy_conf(options => { model => undef }) },
    });
    ok $r2->{status} < 300, 'route created' or diag $r2->{body};
    $llm->clear;
    my $r = post_json($sluice, '/client-model', { %$question, model => 'my-model' });
    is $r->{status}, 200, 'status';
    is $llm->last_request->{json}{model}, 'my-model', 'client model sent';
    my $line = $sluice->wait_access_log(5)->[-1] || {};
    is $line->{request_llm_model}, 'my-model', 'request_llm_model';
    is $line->{llm_model}, 'my-model', 'llm_model';
    is $line->{llm_provider_instance}, 'ai-proxy-openai-compatible', 'instance name';
};

done_testing;
