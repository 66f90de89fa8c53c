#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){ FILE*f=fopen(argv[1],"rb"); fseek(f,0,SEEK_END); long n=ftell(f); fseek(f,0,SEEK_SET);
 unsigned char*in=malloc(n); fread(in,1,n,f); unsigned char md[32]; unsigned int l;
 double t0=now(); EVP_MD_CTX*c=EVP_MD_CTX_new(); EVP_DigestInit(c,EVP_sha256()); for(long o=0;o<n;o+=262144){long k=n-o<262144?n-o:262144; EVP_DigestUpdate(c,in+o,k);} EVP_DigestFinal(c,md,&l);
 double t1=now(); printf("sha256 %.1f MB/s\n", n/(t1-t0)/1e6);}
