# ai-proxy and embeddings: a body with `input` (and no `messages`) is openai-embeddings, sent
# to the provider's /v1/embeddings; the answer is relayed byte for byte, however large, and
# usage (prompt = total, completion 0) is read from it without decoding the vectors; `stream`
# in an embeddings body does not make it a stream.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $mock = 'http://127.0.0.1:' . $llm->port;
my $sluice = start_sluice(routes => [
    { id => 'emb', uri => '/v1/embeddings',
      plugins => { 'ai-proxy' => { provider => 'openai',
                                   auth => { header => { Authorization => 'Bearer sk-oa' } },
                                   options => { model => 'text-embedding-3-small' },
                                   override => { endpoint => $mock } } } },
    { id => 'compat', uri => '/compat/embeddings',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(
          options => { model => undef },
          override => { endpoint => "$mock/v1/embeddings" }) } },
]);

my $n = 0;
sub ask { $n++; my ($p, $b) = @_; post_json($sluice, $p, $b) }
sub line { my $log = $sluice->wait_access_log($n); return $log->[$n - 1] || {} }

sub normalise { my ($s) = @_; $s =~ s/"model":"[^"]*"/"model":"x"/g; $s }

subtest 'one input' => sub {
    $llm->clear;
    my $r = ask('/v1/embeddings', { input => 'hello embedding world', model => 'ada' });
    is $r->{status}, 200, 'status';
    is $r->{json}{object}, 'list', 'a list';
    is scalar @{ $r->{json}{data}[0]{embedding} }, 8, 'a vector';
    my $up = $llm->last_request;
    is $up->{path}, '/v1/embeddings', 'path';
    is $up->{json}{model}, 'text-embedding-3-small', 'options.model';
    my $l = line();
    is $l->{request_type}, 'ai_chat', 'request_type ai_chat (as APISIX)';
    is $l->{llm_prompt_tokens}, 3, 'prompt tokens';
    is $l->{llm_completion_tokens}, 0, 'no completion tokens';
    is $l->{llm_total_tokens}, 3, 'total';
    is $l->{request_llm_model}, 'ada', 'request_llm_model';
};

subtest 'a large batch is relayed byte for byte' => sub {
    my @input = map { "sentence number $_ with some words" } 1 .. 3000;
    my $body = { input => \@input, model => 'm' };
    my $r = ask('/compat/embeddings', $body);
    my $direct = post_json($llm, '/v1/embeddings', $body);
    is $r->{status}, 200, 'status';
    cmp_ok length $r->{body}, '>', 200_000, 'a big answer (' . length($r->{body}) . ' bytes)';
    is scalar @{ $r->{json}{data} }, 3000, '3000 vectors';
    ok normalise($r->{body}) eq normalise($direct->{body}), 'same bytes as from the provider';
    my $l = line();
    is $l->{llm_prompt_tokens}, 18000, 'usage found at the end';
    is $l->{llm_total_tokens}, 18000, 'total';
};

subtest 'token-id input' => sub {
    ask('/v1/embeddings', { input => [[1, 2, 3, 4], [5, 6]] });
    my $l = line();
    is $l->{llm_prompt_tokens}, 6, 'token ids counted by the provider';
};

subtest 'stream in an embeddings body is not a stream' => sub {
    my $r = ask('/v1/embeddings', { input => 'a b', stream => JSON::PP::true });
    is $r->{status}, 200, 'status';
    like $r->{headers}{'content-type'}, qr{^application/json}, 'JSON';
    my $l = line();
    is $l->{request_type}, 'ai_chat', 'not ai_stream';
    is $l->{llm_prompt_tokens}, 2, 'usage';
};

done_testing;
