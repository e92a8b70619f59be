# Secrets at rest (data_encryption.keyring): the fields plugins list in encrypt_fields
# (key-auth's consumer key, ai-proxy's auth headers) and ssls private keys are sealed in
# store.json, given back in clear by GET, used in clear by the data plane, and still open
# after a restart and after a new key is put first in the keyring.
use strict; use warnings; use lib 't/lib'; use Test::More;
use File::Temp qw(tempdir);
use Sluice::Test qw(:all);

my $SECRET_KEY = 'consumer-secret-4f1c9a';
my $SECRET_HDR = 'Bearer sk-provider-secret-77d2';
my $llm = start_mock_llm();
my $sluice = start_sluice(config => { data_encryption => { keyring => ['qeddd145sfvddff3'] } });
my $A = '/apisix/admin';
my $store = $sluice->prefix . '/data/store.json';

sub raw_store { do { local $/; open my $f, '<', $store or die "$store: $!"; <$f> } }

my $dir = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/key.pem -out $dir/cert.pem "
       . "-days 2 -subj /CN=enc.local >/dev/null 2>&1") == 0 or BAIL_OUT('openssl req failed');
my ($cert, $key) = map { local $/; open my $f, '<', "$dir/$_" or die; scalar <$f> }
                   qw(cert.pem key.pem);
my ($key_body) = $key =~ /-----\n(\S{40})/;

subtest 'written sealed' => sub {
    is admin_put($sluice, "$A/consumers", { username => 'jack',
        plugins => { 'key-auth' => { key => $SECRET_KEY } } })->{status}, 201, 'consumer';
    is admin_put($sluice, "$A/routes/1", { uri => '/v1/chat/completions', plugins => {
        'key-auth' => {},
        'ai-proxy' => $llm->ai_proxy_conf(auth => { header => { Authorization => $SECRET_HDR } }),
    } })->{status}, 201, 'route';
    is admin_put($sluice, "$A/ssls/1", { cert => $cert, key => $key, snis => ['enc.local'] })
       ->{status}, 201, 'ssl';
    my $raw = raw_store();
    unlike $raw, qr/\Q$SECRET_KEY\E/, 'the consumer key is not in store.json';
    unlike $raw, qr/sk-provider-secret/, 'the provider key is not in store.json';
    unlike $raw, qr/\Q$key_body\E/, 'the TLS private key is not in store.json';
    like $raw, qr/\$sluice\$aes-256-gcm\$v1\$/, 'sealed values are';
    like $raw, qr/enc\.local/, 'other fields stay readable';
};

subtest 'GET gives the clear values' => sub {
    my $res = admin_req($sluice, 'GET', "$A/consumers/jack");
    is $res->{json}{value}{plugins}{'key-auth'}{key}, $SECRET_KEY, 'consumer key';
    $res = admin_req($sluice, 'GET', "$A/routes/1");
    is $res->{json}{value}{plugins}{'ai-proxy'}{auth}{header}{Authorization}, $SECRET_HDR,
       'provider key';
};

subtest 'the data plane uses the clear values' => sub {
    my $res = post_json($sluice, '/v1/chat/completions', { messages => [] },
                        headers => { apikey => $SECRET_KEY });
    is $res->{status}, 200, 'key-auth accepted the key';
    is $llm->last_request->{headers}{authorization}, $SECRET_HDR, 'the provider got its key';
    unlike join('', map { -f $_ ? do { local $/; open my $f, '<', $_; <$f> } : '' }
                    glob($sluice->prefix . '/logs/*')),
           qr/\Q$SECRET_KEY\E|sk-provider-secret/, 'no secret in any log';
};

subtest 'after a restart with a new key first in the keyring' => sub {
    $sluice->stop;
    my $conf = do { local $/; open my $f, '<', $sluice->conf_file or die; <$f> };
    $conf =~ s/"qeddd145sfvddff3"/"a-newer-key-0001", "qeddd145sfvddff3"/ or die 'keyring';
    open my $f, '>', $sluice->conf_file or die;
    print $f $conf;
    close $f;
    $sluice->start;
    my $res = admin_req($sluice, 'GET', "$A/consumers/jack");
    is $res->{json}{value}{plugins}{'key-auth'}{key}, $SECRET_KEY, 'old values still open';
    $res = post_json($sluice, '/v1/chat/completions', { messages => [] },
                     headers => { apikey => $SECRET_KEY });
    is $res->{status}, 200, 'and work';
    is admin_put($sluice, "$A/consumers", { username => 'jill',
        plugins => { 'key-auth' => { key => 'jill-secret-x1' } } })->{status}, 201, 'new write';
    unlike raw_store(), qr/jill-secret-x1/, 'sealed with the new key';
    is admin_req($sluice, 'GET', "$A/consumers/jill")->{json}{value}{plugins}{'key-auth'}{key},
       'jill-secret-x1', 'and opens';
};

subtest 'a keyring that cannot open the values: logged, the key does not work' => sub {
    $sluice->stop;
    my $conf = do { local $/; open my $f, '<', $sluice->conf_file or die; <$f> };
    $conf =~ s/"a-newer-key-0001", "qeddd145sfvddff3"/"an-unrelated-key"/ or die 'keyring';
    open my $f, '>', $sluice->conf_file or die;
    print $f $conf;
    close $f;
    $sluice->start;
    ok $sluice->wait_error_log(qr/failed to decrypt a field of consumers\/jack/, 3), 'logged';
    my $res = post_json($sluice, '/v1/chat/completions', { messages => [] },
                        headers => { apikey => $SECRET_KEY });
    is $res->{status}, 401, 'the sealed key matches nothing';
};

subtest 'a keyring entry of the wrong length stops the start' => sub {
    my $bad = start_sluice(expect_exit => 1,
                           config => { data_encryption => { keyring => ['short'] } });
    isnt $bad->exit_status, 0, 'exit status';
    like $bad->stderr, qr/data_encryption\.keyring\[1\]: expected a string of 16 or 32 characters/,
         'says why';
};

subtest 'without a keyring, secrets are stored as written (as APISIX with encryption off)' => sub {
    my $plain = start_sluice();
    admin_put($plain, "$A/consumers", { username => 'p',
        plugins => { 'key-auth' => { key => 'plain-key-1' } } });
    my $raw = do { local $/; open my $fh, '<', $plain->prefix . '/data/store.json' or die; <$fh> };
    like $raw, qr/plain-key-1/, 'plain';
    $plain->stop;
};

done_testing;
