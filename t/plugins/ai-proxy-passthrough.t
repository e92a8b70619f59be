# ai-proxy passthrough: a JSON object that is no known protocol (no messages, no input) goes to
# the provider at the client's path with the client's method and query; auth.query keys win
# over the client's, the client's over the endpoint's (reference §2.3.8); the body is sent as
# it is, the answer relayed as it is, and no usage is counted.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $mock = 'http://127.0.0.1:' . $llm->port;
my $sluice = start_sluice(routes => [
    { id => 'pt', uri => '/echo/*',
      plugins => { 'ai-proxy' => { provider => 'openai',
                                   auth => { header => { Authorization => 'Bearer sk-oa' },
                                             query => { key => 'route-key' } },
                                   override => { endpoint => "$mock?region=eu&tier=1" } } } },
]);

subtest 'client path, method and query' => sub {
    $llm->clear;
    my $raw = '{"task": "moderate", "text": "hello"}';
    my $r = http_req($sluice, 'PUT', '/echo/files/abc?tier=2&key=client-key&x=1',
                     body => $raw, headers => { 'Content-Type' => 'application/json',
                                                Authorization => 'Bearer client' });
    is $r->{status}, 200, 'status';
    my $up = $llm->last_request;
    is $up->{method}, 'PUT', 'the client\'s method';
    is $up->{path}, '/echo/files/abc', 'the client\'s path';
    is $up->{args}{key}, 'route-key', 'auth.query wins over the client';
    is $up->{args}{tier}, '2', 'the client wins over the endpoint query';
    is $up->{args}{region}, 'eu', 'endpoint query kept';
    is $up->{args}{x}, '1', 'other client args kept';
    is $up->{body}, $raw, 'body as sent';
    is $up->{headers}{authorization}, 'Bearer sk-oa', 'route auth';
    is_deeply $r->{json}{json}, { task => 'moderate', text => 'hello' }, 'the answer relayed';
    my $l = $sluice->wait_access_log(1)->[0] || {};
    is $l->{request_type}, 'ai_chat', 'request_type ai_chat';
    is $l->{llm_total_tokens}, 0, 'no usage for passthrough';
};

done_testing;
