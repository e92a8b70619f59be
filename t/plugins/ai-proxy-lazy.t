# ai-proxy and a big conversation: the messages array (more than 256 bytes) is checked but not
# decoded on the plain path, and still reaches the provider byte for byte; everything that
# needs its content gets it decoded: a plugin after ai-proxy (pdk.request.get_json), payload
# logging, a protocol converter, the prompt estimate of a stream without usage. A broken byte
# deep inside the big member is still a 400.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $mock = 'http://127.0.0.1:' . $llm->port;

# log-phase probe: what a later plugin sees of the body, and what payload logging recorded
my $probe_dir = tempdir('sluice-probe-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open my $fh, '>', "$probe_dir/body-probe.lua" or die $!;
print $fh <<'LUA';
local pdk = require("sluice.pdk")
local _M = { name = "body-probe", version = 1, priority = 1, schema = { type = "object" } }
function _M.log(conf, ctx)
    local body = pdk.request.get_json(ctx)
    local msgs = type(body) == "table" and body.messages
    local out = {
        messages = type(msgs) == "table" and #msgs or -1,
        last = type(msgs) == "table" and msgs[#msgs] and msgs[#msgs].content or "",
        logged = ctx.llm_request and type(ctx.llm_request.messages) == "table"
                 and #ctx.llm_request.messages or -1,
    }
    pdk.log.warn("BODYPROBE ", pdk.json.encode(out))
end
return _M
LUA
close $fh;

my %oa = (provider => 'openai-compatible', auth => { header => { Authorization => 'Bearer k' } },
          options => { model => 'route-model' },
          override => { endpoint => "$mock/v1/chat/completions" });
my $sluice = start_sluice(
    config => { plugin_paths => [$probe_dir], plugins => ['ai-proxy', 'body-probe'] },
    routes => [
        { id => 'plain', uri => '/plain/*',
          plugins => { 'ai-proxy' => {%oa}, 'body-probe' => {} } },
        { id => 'payloads', uri => '/payloads/*',
          plugins => { 'ai-proxy' => { %oa, logging => { payloads => JSON::PP::true } },
                       'body-probe' => {} } },
        { id => 'convert', uri => '/convert/*',
          plugins => { 'ai-proxy' => { provider => 'openai',
                                       auth => { header => { Authorization => 'Bearer k' } },
                                       override => { endpoint => $mock } } } },
    ]);

my $n = 0;
sub line { my $log = $sluice->wait_access_log($n); return $log->[$n - 1] || {} }
my $n_probe = 0;
sub probe {                 # the next probe line (the log phase runs after the answer)
    $n_probe++;
    my @l;
    wait_for(sub { @l = $sluice->error_log =~ /BODYPROBE (\{.*\})/g; @l >= $n_probe }, 5);
    return @l >= $n_probe ? decode_json($l[$n_probe - 1]) : {};
}

# twelve messages of ~300 bytes, with escapes the skipping must walk over correctly
my @messages = map {
    { role => $_ % 2 ? 'assistant' : 'user',
      content => "turn $_: caf\x{e9} \"quoted\" back\\slash tab\t " . ('lorem ipsum ' x 22) }
} 1 .. 12;
my $JSON = JSON::PP->new->canonical->ascii;    # \u00e9 escapes in the body
my $body = $JSON->encode({ model => 'client-model', temperature => 0.5,
                           messages => \@messages });
cmp_ok length $body, '>', 3000, 'a big conversation (' . length($body) . ' bytes)';

sub send_raw {
    my ($path, $raw, %h) = @_;
    $n++;
    return http_req($sluice, 'POST', $path, body => $raw,
                    headers => { 'Content-Type' => 'application/json', %h });
}

subtest 'plain path: bytes of the conversation kept, model replaced' => sub {
    $llm->clear;
    my $r = send_raw('/plain/v1/chat/completions', $body);
    is $r->{status}, 200, 'status';
    my $up = $llm->last_request;
    is $up->{json}{model}, 'route-model', 'options.model spliced in';
    my ($sent) = $up->{body} =~ /("messages":\[.*\])/s;
    my ($orig) = $body =~ /("messages":\[.*\])/s;
    is $sent, $orig, 'the messages array went out byte for byte';
    is_deeply $up->{json}{messages}, \@messages, 'and decodes to what the client sent';
    my $p = probe();
    is $p->{messages}, 12, 'a later plugin gets the whole body from get_json';
    is $p->{last}, $messages[-1]{content}, 'with the content decoded';
    cmp_ok line()->{llm_prompt_tokens}, '>', 0, 'usage logged';
};

subtest 'payload logging decodes the conversation' => sub {
    my $r = send_raw('/payloads/v1/chat/completions', $body);
    is $r->{status}, 200, 'status';
    is probe()->{logged}, 12, 'ctx.llm_request.messages has every message';
};

subtest 'a converter gets the decoded conversation' => sub {
    $llm->clear;
    my $anth = $JSON->encode({ model => 'claude-x', max_tokens => 50, messages => \@messages });
    my $r = send_raw('/convert/v1/messages', $anth);
    is $r->{status}, 200, 'status';
    is $r->{json} && $r->{json}{type}, 'message', 'an Anthropic answer';
    my $up = $llm->last_request;
    is $up->{path}, '/v1/chat/completions', 'sent as OpenAI chat';
    is scalar @{ $up->{json}{messages} || [] }, 12, 'every message converted';
    is $up->{json}{messages}[-1]{content}, $messages[-1]{content}, 'content intact';
};

subtest 'a stream without usage: the prompt estimate reads the conversation' => sub {
    my $sbody = $JSON->encode({ model => 'client-model', stream => JSON::PP::true,
                                messages => \@messages });
    my $r = send_raw('/plain/v1/chat/completions', $sbody, 'x-mock-usage' => '0');
    is $r->{status}, 200, 'status';
    my $l = line();
    ok $l->{llm_usage_estimated}, 'estimated';
    cmp_ok $l->{llm_prompt_tokens}, '>', 500, "prompt estimate from ~3.7 KB of text ($l->{llm_prompt_tokens})";
};

subtest 'a broken byte deep in the conversation is a 400' => sub {
    for my $case (['a bad escape', sub { $_[0] =~ s/back\\\\slash(?!.*back)/back\\xslash/s }],
                  ['a lone surrogate', sub { $_[0] =~ s/\\u00e9(?!.*\\u00e9)/\\udc00/s }],
                  ['a missing comma', sub { $_[0] =~ s/\},\{(?!.*\},\{)/}{/s }]) {
        my $bad = $body;
        $case->[1]->($bad);
        isnt $bad, $body, "$case->[0]: body changed";
        my $r = send_raw('/plain/v1/chat/completions', $bad);
        is $r->{status}, 400, "$case->[0]: 400";
        like $r->{body}, qr/could not parse JSON request body/, "$case->[0]: APISIX's message"
            or diag $r->{body};
    }
};

done_testing;
